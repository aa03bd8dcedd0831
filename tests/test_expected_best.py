"""Expected best validation BLEU by number of trials (study/analysis/expected_best.py): the estimator against
closed forms and brute force, its band, the sentences on constructed regimes, the plot, and a real finished
study's report."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.analysis import expected_best as eb
from study.analysis.load import StudyAnalysis
from study.common import write_atomic

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n", [1, 2, 5, 8, 30])
def test_distinct_uniform_scores_give_the_closed_form(n):
    # n distinct values 1..n, k drawn without replacement: E[max] = k (n+1) / (k+1), in whatever order they come
    scores = np.random.default_rng(n).permutation(np.arange(1, n + 1))
    k = np.arange(1, n + 1)
    assert eb.expected_max(scores) == pytest.approx(k * (n + 1) / (k + 1), rel=1e-12)


def test_one_trial_is_the_mean_all_trials_the_max_and_between_the_average_over_subsets():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(20, 5, 9), 1)
    scores[3] = scores[5]  # ties change nothing
    curve = eb.expected_max(scores)
    assert curve[0] == pytest.approx(scores.mean()) and curve[-1] == pytest.approx(scores.max())
    for k in range(1, len(scores) + 1):
        brute = np.mean([max(s) for s in itertools.combinations(scores, k)])
        assert curve[k - 1] == pytest.approx(brute, rel=1e-12)


def test_curve_and_band_never_fall_as_trials_grow_and_the_band_is_seeded():
    rng = np.random.default_rng(2)
    for scores in (rng.uniform(0, 30, 12), rng.exponential(3, 7), np.r_[np.zeros(7), 25.0], np.full(5, 4.0)):
        curve, low, high = eb.expected_max(scores, resamples=300, seed=3)
        for y in (curve, low, high):
            assert (np.diff(y) >= -1e-9).all(), y
        assert (low <= high).all() and high[-1] == pytest.approx(scores.max())
        again = eb.expected_max(scores, resamples=300, seed=3)
        assert np.array_equal(again[1], low) and np.array_equal(again[2], high)


def test_weights_stay_finite_where_the_binomials_overflow():
    w = eb.weights(2000)  # C(2000, 1000) ~ 1e600: no float holds it
    assert np.isfinite(w).all() and w.sum(axis=1) == pytest.approx(np.ones(2000))
    assert eb.expected_max(np.arange(1, 2001))[-1] == pytest.approx(2000)


def _trial(regime: str, score: float, status: str = "finished", run: str = "search") -> dict:
    return {"regime": regime, "status": status, "run": run, "best_val_bleu": score}


def _study(path: Path, trials: list[dict], regimes: list[str]) -> StudyAnalysis:
    """A fabricated analysis: only what the curve reads (trials, the regimes, which train)."""
    return StudyAnalysis(path, {"name": path.name, "regimes": regimes, "trains": {"upstream": False}},
                         pd.DataFrame(trials), pd.DataFrame(), pd.DataFrame(),
                         pd.DataFrame({"regime": regimes, "state": "finished"}), {})


def _two_regimes(path: Path) -> StudyAnalysis:
    """`decoder`: one trial on a sharp peak, the rest near nothing (its curve rises all the way to 8 trials);
    `full`: every trial good, none great (flat by 8). `full` leads with few trials, `decoder` with 6 or more.
    Around them, what the curve must not count: an upstream evaluation, a seed re-run, an errored trial."""
    decoder = [_trial("decoder", s) for s in (0.5, 1.0, 0.2, 0.8, 0.4, 0.6, 30.0)] + [_trial("decoder", 0.3, "pruned")]
    full = [_trial("full", s) for s in (18, 19, 20, 20, 21, 21, 22, 22)]
    noise = [_trial("upstream", 5.0), _trial("full", 40.0, run="seeds"), _trial("full", 50.0, "errored"),
             _trial("decoder", float("nan"), "running")]
    return _study(path, decoder + full + noise, ["upstream", "decoder", "full"])


def test_rising_and_crossing_sentences_on_two_constructed_regimes(tmp_path):
    a = _two_regimes(tmp_path / "constructed")
    c = eb.curves(a, resamples=200)
    assert list(dict.fromkeys(c["regime"])) == ["decoder", "full"] and set(c["n"]) == {8}
    full = c[c["regime"] == "full"]
    assert full["expected_best"].iloc[0] == pytest.approx(20.375) and full["expected_best"].iloc[-1] == 22
    rising = eb.rising(c)
    # the n-th trial adds (best - second best) / n: (30 - 1) / 8 here
    assert rising["decoder"].startswith(f"`decoder` is still rising at 8 trials: the 8th trial added {29 / 8:.2f} ")
    assert "1 of its 8 trials, stopped early by ASHA, counts with the best it reached" in rising["decoder"]
    assert rising["full"].startswith("`full` has levelled off by 8 trials: the 8th trial added 0.00")
    assert eb.crossings(c) == ["`decoder` and `full` cross at 6 trials: `full` is ahead with fewer, `decoder` from 6 "
                               "on (up to the 8 both ran), so which of them wins depends on the search budget."]


def test_curves_that_never_cross_say_their_order_holds(tmp_path):
    trials = [_trial("scratch", s) for s in (1, 2, 3, 2)] + [_trial("full", s) for s in (18, 19, 20, 22, 21)]
    c = eb.curves(_study(tmp_path / "apart", trials, ["scratch", "full"]), resamples=50)
    assert eb.crossings(c) == ["No two curves cross: `full` > `scratch` at every number of trials from 1 to 4, so "
                               "their order does not depend on the search budget within it."]
    one = eb.curves(_study(tmp_path / "one", [_trial("full", 3.0)], ["full"]), resamples=50)
    assert eb.sentences(one) == ["`full` has one scored trial: no curve to read yet."]


def test_the_plot_and_the_report_section_on_a_constructed_study(tmp_path):
    from study.analysis.plots import PLOTS, expected_best

    a = _two_regimes(tmp_path / "constructed")
    assert PLOTS["expected_best.png"] is expected_best
    assert expected_best(a, tmp_path / "plots" / "expected_best.png", write_atomic)
    png = tmp_path / "plots" / "expected_best.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    text = "\n".join(eb.section(a, "plots/expected_best.png"))
    assert text.startswith("## Expected best by number of trials")
    assert "- `decoder` is still rising at 8 trials" in text and "- `decoder` and `full` cross at 6 trials" in text
    assert "[plots/expected_best.png](plots/expected_best.png)" in text
    a.record["samplers"] = {"decoder": {"sampler": "tpe"}, "full": {"sampler": "random"}}  # TPE's draws are not random
    assert "The trials are read as random draws, which `decoder`'s are not" in "\n".join(eb.section(a))
    nothing = _study(tmp_path / "none", [_trial("upstream", 5.0)], ["upstream"])
    assert not expected_best(nothing, tmp_path / "none.png", write_atomic)
    assert "No trained regime has a scored trial yet." in eb.section(nothing)


@pytest.mark.slow  # reads the session's real pruning study (a local Ray study of tiny models)
@pytest.mark.xdist_group("pruning_study")  # built once, with the other modules that read it
def test_a_finished_studys_report_has_the_curve_and_its_sentence(pruning_study, tmp_path):
    from study.analyze import load, main

    study = Path(shutil.copytree(pruning_study.path, tmp_path / "pruned"))
    assert main([str(study)]) == 0
    png = study / "plots" / "expected_best.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    report = (study / "report.md").read_text(encoding="utf-8")
    assert "## Expected best by number of trials" in report and "](plots/expected_best.png)" in report
    trials = load(study).trials
    search = trials[(trials["run"] == "search") & trials["status"].isin(["finished", "pruned"])]
    n, scores = len(search), search["best_val_bleu"].astype(float)
    assert n == 4 and (search["status"] == "pruned").any()  # conftest: ASHA stops the later bad draws
    assert (f"- `scratch` is still rising at {n} trials" in report) != (f"- `scratch` has levelled off by {n} trials"
                                                                        in report)
    assert f"to {scores.max():.2f} with {n}" in report and f"from {scores.mean():.2f} with 1 trial" in report
    best = json.loads((study / "scratch" / "best.json").read_text())
    assert scores.max() == pytest.approx(best["best_val_bleu"])
