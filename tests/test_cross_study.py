"""Regime A against regime B across studies (study/analysis/cross_study.py), the Student t helper it rests on
(study/metrics/student_t.py), and `python -m study.run --replicates K`, which runs K studies and that analysis."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
from conftest import study_argv, tiny_sentences, write_space

from study.analysis.conclusions import FINDING, INCONCLUSIVE
from study.analysis.cross_study import COLUMNS, FILE
from study.analyze import main as analyze_main
from study.metrics import student_t

# --- the t helper -----------------------------------------------------------------------------------------

# Textbook t quantiles (two-sided 95 % and 99 %) and CDF values, to the digits the tables print.
QUANTILES = [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 10, 2.2281),
             (0.975, 30, 2.0423), (0.995, 5, 4.0321), (0.95, 3, 2.3534), (0.975, 1000, 1.9623)]
CDFS = [(1.0, 1, 0.75), (0.0, 7, 0.5), (2.0, 2, 0.908248290463863),  # df 1: Cauchy; df 2: 1/2 + t/(2 sqrt(2 + t²))
        (-2.0, 2, 0.091751709536137), (3.0, 1, 0.5 + math.atan(3.0) / math.pi)]


@pytest.mark.parametrize(("q", "df", "expected"), QUANTILES)
def test_t_quantiles_match_the_tables(q, df, expected):
    assert student_t.quantile(q, df) == pytest.approx(expected, abs=6e-5)
    assert student_t.quantile(1 - q, df) == pytest.approx(-expected, abs=6e-5)  # symmetric
    assert student_t.cdf(student_t.quantile(q, df), df) == pytest.approx(q, abs=1e-10)  # the inverse of the CDF


@pytest.mark.parametrize(("t", "df", "expected"), CDFS)
def test_t_cdf_matches_closed_forms(t, df, expected):
    assert student_t.cdf(t, df) == pytest.approx(expected, abs=1e-12)


def test_t_two_sided_p_and_one_sample_test():
    assert student_t.two_sided_p(2.7764451052, 4) == pytest.approx(0.05, abs=1e-9)
    assert student_t.two_sided_p(0.0, 3) == 1.0 and student_t.two_sided_p(math.inf, 3) == 0.0
    # d = 2, 2.5, 3: mean 2.5, se 0.5/sqrt(3), t = 8.660, df 2 (scipy.stats.ttest_1samp: p = 0.0130725)
    test = student_t.one_sample([2.0, 2.5, 3.0])
    assert test["t"] == pytest.approx(8.660254, abs=1e-6) and test["df"] == 2
    assert test["p"] == pytest.approx(0.013072457560, abs=1e-9)
    assert (test["ci_low"], test["ci_high"]) == pytest.approx((2.5 - 4.302653 * 0.288675, 2.5 + 4.302653 * 0.288675),
                                                              abs=1e-5)
    assert student_t.one_sample([1.0, 1.0])["p"] == 0.0 and student_t.one_sample([0.0, 0.0])["p"] == 1.0
    with pytest.raises(ValueError):
        student_t.one_sample([1.0])
    with pytest.raises(ValueError):
        student_t.quantile(0.975, 0)


def test_t_agrees_with_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")  # not a declared dependency; scikit-learn usually brings it
    rng = random.Random(0)
    for _ in range(300):
        df = rng.choice([0.7, 1, 1.5, 2, 3, 4, 6.2, 12, 30, 120, 2000])
        t = rng.uniform(-1, 1) * rng.choice([0.1, 1, 5, 40])
        assert student_t.cdf(t, df) == pytest.approx(float(stats.t.cdf(t, df)), abs=1e-11), (t, df)
        q = rng.uniform(0.005, 0.995)
        assert student_t.quantile(q, df) == pytest.approx(float(stats.t.ppf(q, df)), rel=1e-9, abs=1e-9), (q, df)


# --- fabricated studies -----------------------------------------------------------------------------------

def _variant(refs: list[str], keep: float, seed: int) -> list[str]:
    """A system's output: each reference word kept with probability `keep`, else a word from elsewhere."""
    rng = random.Random(seed)
    words = " ".join(refs).split()
    return [" ".join(w if rng.random() < keep else rng.choice(words) for w in r.split()) for r in refs]


def _study(path: Path, seed: int, means: dict[str, float] | None = None,
           outputs: dict[str, list[list[str]]] | None = None, refs: list[str] | None = None) -> Path:
    """A finished study at `--seed seed` as the analysis reads it: study.json and each regime's best.json,
    either with the given mean test BLEU (`means`) or scored from real seed-run outputs written as test scoring
    writes them (`outputs`: the best trial's test.hyp.txt first, then test.hyp.seed<N>.txt)."""
    from study.metrics.scoring import translation_scores

    regimes = list(means or outputs)
    path.mkdir(parents=True)
    (path / "study.json").write_text(json.dumps({
        "name": path.name, "regimes": regimes, "preset": "quick", "seed": seed,
        "config": {"model": "tiny", "data": "sample", "seed": seed, "data_seed": 0},
        "budget": {"max_epochs": 1, "num_samples": 4, "seeds": 3}}))
    for regime in regimes:
        (path / regime).mkdir()
        if outputs:
            runs = outputs[regime]
            (path / regime / "test.ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
            (path / regime / "test.src.txt").write_text("".join(f"source {i}\n" for i in range(len(refs))))
            for k, hyps in enumerate(runs):
                name = "test.hyp.txt" if k == 0 else f"test.hyp.seed{seed * 100 + k}.txt"
                (path / regime / name).write_text("\n".join(hyps) + "\n", encoding="utf-8")
            bleus = [translation_scores(h, refs)["bleu"] for h in runs]
        else:
            bleus = [means[regime] - 0.5, means[regime] + 0.5, means[regime]]
        (path / regime / "best.json").write_text(json.dumps({
            "regime": regime, "trial_id": f"t_{regime}", "test_bleu": bleus[0],
            "test_bleu_mean": sum(bleus) / len(bleus), "test_bleu_sd": 0.5, "test_bleu_n": len(bleus),
            "best_val_bleu": bleus[0], "trainable_params": 1, "config": {"model": "tiny"},
            "seeds": [{"seed": seed if k == 0 else seed * 100 + k, "test_bleu": b} for k, b in enumerate(bleus)]}))
    return path


def _cross(studies: list[Path], out: Path, capsys) -> pd.DataFrame:
    assert analyze_main([*map(str, studies), "--out", str(out), "--no-plots"]) == 0
    assert f"cross-study verdict: {out / FILE}" in capsys.readouterr().out
    frame = pd.read_csv(out / FILE)
    assert list(frame.columns) == COLUMNS
    return frame.set_index(["a", "b"])


def test_regimes_whose_order_flips_between_studies_are_inconclusive_though_each_study_calls_it_a_finding(
        tmp_path, capsys):
    """Three studies at seeds 0, 1, 2: in two `full` is far better than `scratch`, in the third far worse, and
    each study's own test (its pairwise.csv, written by its own analysis) calls its difference a finding. Over
    the studies the order flips, so the claim about the regimes is inconclusive."""
    refs = tiny_sentences(200, seed=7)
    good = [[_variant(refs, 0.85, seed=s * 10 + k) for k in range(3)] for s in range(3)]
    bad = [[_variant(refs, 0.4, seed=s * 10 + 5 + k) for k in range(3)] for s in range(3)]
    studies = [_study(tmp_path / f"quick-seed{s}", s, refs=refs,
                      outputs={"full": good[s], "scratch": bad[s]} if s < 2 else {"full": bad[s], "scratch": good[s]})
               for s in range(3)]
    for study in studies:  # each study's own analysis: its pairwise.csv
        assert analyze_main([str(study), "--no-plots"]) == 0
        own = pd.read_csv(study / "pairwise.csv")
        assert own["verdict"].tolist() == [FINDING], own.to_dict("records")
    capsys.readouterr()
    frame = _cross(studies, tmp_path / "cross", capsys)
    assert list(frame.index) == [("full", "scratch")]  # higher on average: two large wins against one loss
    row = frame.loc[("full", "scratch")]
    assert row["n_studies"] == 3 and row["difference"] > 0 and row["ci_low"] < 0 < row["ci_high"]
    assert row["p"] > 0.05 and row["p_adjusted"] == row["p"]  # one pair: Holm changes nothing
    assert row["verdict"] == INCONCLUSIVE
    assert "the order flips between studies: `full` higher in 2 of 3" in row["reason"]
    report = (tmp_path / "cross" / "cross_study.md").read_text()
    assert "over 3 studies at seeds 0, 1, 2, each with its own search, upstream and seed runs" in report
    assert f"`full` higher, {FINDING}, in 2; `scratch` higher, {FINDING}, in 1; of 3" in report
    table = next(line for line in report.splitlines() if line.startswith("| `full` − `scratch` | +") and " / " in line)
    assert table.count(FINDING) == 3  # each study's own verdict beside the studies' one


def test_a_consistent_difference_across_studies_is_a_finding(tmp_path, capsys):
    """Four studies (best.json alone, no pairwise.csv): `full` beats `decoder` by 2 to 3 BLEU in every one, a
    finding; `decoder` and `scratch` swap places, inconclusive; the report says the studies' own verdicts are
    missing. Two studies are never enough, however consistent."""
    gaps = [2.0, 2.5, 3.0, 2.2]
    studies = [_study(tmp_path / f"s{s}", s, means={"full": 20 + g, "decoder": 20.0, "scratch": 20.1 + (-1) ** s})
               for s, g in enumerate(gaps)]
    frame = _cross(studies, tmp_path / "cross", capsys)
    assert set(frame.index) == {("full", "decoder"), ("full", "scratch"), ("scratch", "decoder")}
    full = frame.loc[("full", "decoder")]
    expected = student_t.one_sample(gaps)
    assert full["difference"] == pytest.approx(sum(gaps) / 4) and full["p"] == pytest.approx(expected["p"])
    assert full["ci_low"] == pytest.approx(expected["ci_low"]) and full["ci_low"] > 0
    assert full["p_adjusted"] < 0.05 and full["verdict"] == FINDING and full["n_studies"] == 4
    assert "higher in 4 of 4 studies" in full["reason"]
    swap = frame.loc[("scratch", "decoder")]
    assert swap["verdict"] == INCONCLUSIVE and "higher in 2 of 4" in swap["reason"]
    # Holm over the three pairs: the smallest p times 3
    assert frame["p_adjusted"].min() == pytest.approx(min(1.0, 3 * frame["p"].min()))
    report = (tmp_path / "cross" / "cross_study.md").read_text()
    assert "s0, s1, s2, s3: no pairwise.csv" in report and "over 4 studies at seeds 0, 1, 2, 3" in report
    assert "`full` − `decoder`, over 4 studies at seeds 0, 1, 2, 3, each with its own search, upstream and seed " \
           "runs, on the same split (data_seed 0): +2.42 BLEU over 4 of them" in report

    # two studies agreeing to 0.05 BLEU: p < 0.01 with one degree of freedom, and still not a finding
    pair = [_study(tmp_path / f"two{s}", s, means={"full": 23.0 + s / 20, "decoder": 20.0}) for s in range(2)]
    two = _cross(pair, tmp_path / "two", capsys).loc[("full", "decoder")]
    assert two["p_adjusted"] < 0.01 and two["ci_low"] > 0
    assert two["verdict"] == INCONCLUSIVE and "only 2 studies finished both (a finding needs 3)" in two["reason"]


# --- python -m study.run --replicates K ---------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "needle"), [(["--replicates", "0"], "--replicates K runs K >= 1 studies"),
                                               (["--replicates", "-2"], "got -2"),
                                               (["--replicates", "2", "--resume", "old"], "cannot --resume old")])
def test_bad_replicates_are_one_line_and_run_nothing(extra, needle, tmp_path, capsys):
    from study.run import main as run_main

    code = run_main(["--regime", "scratch", "--results", str(tmp_path / "results"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_replicates_run_studies_at_consecutive_seeds_then_the_verdict_across_them(study_pairs, tmp_path, capsys):
    """--replicates 2 at --seed 5: two whole studies of `scratch` and `upstream` (a tiny upstream pretrained per
    seed), named rep-seed5 and rep-seed6, then cross_study_pairwise.csv over them in rep-replicates/."""
    from study.run import main as run_main

    space = write_space(tmp_path / "space.yaml", [3e-3])
    argv = study_argv(study_pairs, tmp_path / "results", "rep", space, 1, 1, study_pairs.parent / "cache", seed=5)
    argv[argv.index("--regime") + 1] = "scratch,upstream"
    code = run_main(argv + ["--replicates", "2", "--pretrain-steps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == ["rep-replicates", "rep-seed5", "rep-seed6"]
    for seed in (5, 6):
        record = json.loads((results / f"rep-seed{seed}" / "study.json").read_text())
        assert record["seed"] == record["config"]["seed"] == seed and record["name"] == f"rep-seed{seed}"
        assert all((results / f"rep-seed{seed}" / r / "best.json").exists() for r in ("scratch", "upstream"))
    frame = pd.read_csv(results / "rep-replicates" / FILE)
    assert list(frame.columns) == COLUMNS and len(frame) == 1
    row = frame.iloc[0]
    assert {row["a"], row["b"]} == {"scratch", "upstream"} and row["n_studies"] == 2 and row["difference"] >= 0
    assert row["verdict"] == INCONCLUSIVE and "only 2 studies finished both" in row["reason"]
    assert f"cross-study verdict: {results / 'rep-replicates' / FILE}" in out
    report = (results / "rep-replicates" / "cross_study.md").read_text()
    assert "over 2 studies at seeds 5, 6, each with its own search, upstream and seed runs" in report
    # the names are taken now: refused in one line before anything runs
    assert run_main(argv + ["--replicates", "2"]) == 2
    assert "rep-seed5 exists already" in capsys.readouterr().err
