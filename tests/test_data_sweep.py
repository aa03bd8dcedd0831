"""The data sweep: `python -m study.run --max-train-pairs 40,80` runs one study per size on nested training pairs
with one tokenizer and one upstream (study/sweep.py, study/series.py), then data_sweep.csv, data_sweep.md and
plots/data_sweep.png (study/analysis/data_sweep.py)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import study_argv, write_space

from study.analysis.data_sweep import COLUMNS, FILE, GAP, Point, closing, table
from study.analysis.verdicts import FINDING, INCONCLUSIVE
from study.config import Config
from study.data.pairs import nested_indices, subset_indices

# --- nested training pairs --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1200, 5000, 20000, 150000])
def test_a_nested_cap_keeps_each_smaller_size_inside_every_larger_one(n):
    kept = [set(nested_indices(n, limit, 0)) for limit in (40, 500, 800, 1100)]
    assert [len(k) for k in kept] == [40, 500, 800, 1100]
    assert all(small <= large for small, large in zip(kept, kept[1:]))
    assert nested_indices(n, 500, 0) == sorted(nested_indices(n, 500, 0))  # file order kept
    assert nested_indices(n, 500, 1) != nested_indices(n, 500, 0)  # the data seed picks them
    assert nested_indices(n, n + 5, 0) == list(range(n))


def test_the_default_cap_draws_each_size_on_its_own_which_is_why_the_sweep_needs_nested():
    assert not set(subset_indices(5000, 500, 0)) <= set(subset_indices(5000, 2000, 0))
    assert Config().train_subset == "sample"  # a study.json written before the field reads back as it ran


# --- bad input: one line, nothing written -------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "needle"), [
    (["--max-train-pairs", "500,0"], "sizes must be at least 1 training pair"),
    (["--max-train-pairs", "500,-3"], "sizes must be at least 1 training pair"),
    (["--max-train-pairs", "500,2000,500"], "lists a size twice"),
    (["--max-train-pairs", "500,lots"], "a comma list of them"),
    (["--max-train-pairs", "0"], "sizes must be at least 1"),
    (["--max-train-pairs", "500,2000", "--resume", "old"], "cannot --resume old"),
    (["--max-train-pairs", "500,2000", "--replicates", "2"], "cannot be combined with --replicates"),
    (["--max-train-pairs", "500,2000", "--train-subset", "sample"], "needs --train-subset nested"),
    (["--max-train-pairs", "500,9000000"], "more than the"),
])
def test_bad_sweeps_are_one_line_and_run_nothing(extra, needle, study_pairs, tmp_path, capsys):
    from study.run import main as run_main

    code = run_main(["--regime", "scratch", "--results", str(tmp_path / "results"), "--data", str(study_pairs),
                     "--tiny-vocab-size", "300", "--cache-dir", str(tmp_path / "cache"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "results").exists()


# --- the table and the sentence, on synthetic studies ------------------------------------------------------


def _best(scores: dict[str, tuple[float, float, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"regime": r, "test_bleu_mean": m, "test_bleu_sd": s, "test_bleu_n": n, "test_bleu": m + 1}
                         for r, (m, s, n) in scores.items()])


def _pair(a: str, b: str, difference: float, low: float, high: float, verdict: str, p: float = 0.01) -> pd.DataFrame:
    """A study's pairwise.csv row as conclusions.pairwise writes it: a − b, a the higher regime."""
    return pd.DataFrame([{"a": a, "b": b, "difference": difference, "ci_low": low, "ci_high": high, "p": p,
                          "p_adjusted": p, "n_seeds_a": 3, "n_seeds_b": 2, "detectable": 4.0, "verdict": verdict,
                          "reason": "why"}])


def _points(gaps: list[tuple[int, float, float, float, str]]) -> list[Point]:
    return [Point(f"q-pairs{n}", n, _best({"scratch": (10.0 + n / 1000, 1.0, 4), "full": (20.0, 0.5, 4)}),
                  _pair("full", "scratch", d, lo, hi, v)) for n, d, lo, hi, v in gaps]


def test_the_table_has_a_row_per_size_and_regime_then_full_minus_scratch():
    points = _points([(2000, 8.0, 6.0, 10.0, FINDING), (500, 12.0, 9.0, 15.0, FINDING)])
    # a size where scratch scored higher: pairwise names it `a`, the sweep turns it into full − scratch
    points.append(Point("q-pairs8000", 8000, _best({"scratch": (21.0, 2.0, 4), "full": (20.0, float("nan"), 1)}),
                        _pair("scratch", "full", 1.0, -0.5, 2.5, INCONCLUSIVE, p=0.3)))
    frame = table(points)
    assert list(frame.columns) == COLUMNS
    assert list(frame["train_pairs"]) == [500] * 3 + [2000] * 3 + [8000] * 3  # smallest first
    assert list(frame["regime"]) == ["scratch", "full", GAP] * 3
    full = frame[(frame["regime"] == "full") & (frame["train_pairs"] == 500)].iloc[0]
    assert (full["test_bleu_mean"], full["test_bleu_sd"], full["n_seeds"], full["study"]) == (20.0, 0.5, 4, "q-pairs500")
    last = frame[frame["regime"] == GAP].iloc[-1]
    assert (last["difference"], last["ci_low"], last["ci_high"]) == (-1.0, -2.5, 0.5)
    assert (last["n_fresh_full"], last["n_fresh_scratch"], last["p"]) == (2, 3, 0.3)
    first = frame[frame["regime"] == GAP].iloc[0]
    assert (first["difference"], first["ci_low"], first["ci_high"], first["verdict"]) == (12.0, 9.0, 15.0, FINDING)
    assert closing(frame).startswith("The gap closes between 2,000 and 8,000 training pairs")


def test_a_study_without_seed_runs_is_one_run_and_a_study_without_both_regimes_has_no_gap_row():
    points = [Point("a", 100, pd.DataFrame([{"regime": "scratch", "test_bleu": 5.0}]), pd.DataFrame()),
              Point("b", 200, _best({"scratch": (6.0, 1.0, 2)}), pd.DataFrame())]
    frame = table(points)
    assert list(frame["regime"]) == ["scratch", "scratch"]
    assert frame.iloc[0]["test_bleu_mean"] == 5.0 and frame.iloc[0]["n_seeds"] == 1
    assert math.isnan(frame.iloc[0]["test_bleu_sd"])
    assert closing(frame).startswith("No size finished both `full` and `scratch`")


@pytest.mark.parametrize(("gaps", "start"), [
    ([(500, 9.0, 7.0, 11.0, FINDING), (2000, 5.0, 3.0, 7.0, FINDING)], "`full` − `scratch` is a finding at every size"),
    ([(500, 1.0, -1.0, 3.0, INCONCLUSIVE), (2000, 0.5, -2.0, 3.0, INCONCLUSIVE)], "`full` − `scratch` is not a finding at any"),
    ([(500, 1.0, -1.0, 3.0, INCONCLUSIVE), (2000, 5.0, 3.0, 7.0, FINDING)], "`full` − `scratch` is a finding at the largest"),
    ([(500, 9.0, 7.0, 11.0, FINDING), (2000, 1.0, -1.0, 3.0, INCONCLUSIVE), (8000, 0.2, -1.0, 1.4, INCONCLUSIVE)],
     "The gap closes between 500 and 2,000 training pairs"),
])
def test_the_sentence_says_where_the_gap_closes(gaps, start):
    assert closing(table(_points(gaps))).startswith(start)


def test_two_studies_at_one_size_or_a_single_size_are_refused():
    from study.config import StudyError

    with pytest.raises(StudyError, match="two studies at 500 training pairs"):
        table(_points([(500, 1.0, 0.0, 2.0, FINDING), (500, 1.0, 0.0, 2.0, FINDING)]))
    with pytest.raises(StudyError, match="two sizes at least"):
        table(_points([(500, 1.0, 0.0, 2.0, FINDING)]))


# --- end to end ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_runs_a_study_per_size_on_nested_pairs_with_one_tokenizer_and_upstream(study_pairs, tmp_path, capsys):
    """--max-train-pairs 80,40: two whole studies of `scratch` and `full` (2 trials, 1 epoch, 2 seed runs), named
    sw-pairs40 and sw-pairs80, then data_sweep.csv / .md and plots/data_sweep.png in sw-data-sweep/."""
    from study.data.prepared import prepare_text
    from study.run import main as run_main

    cache = tmp_path / "cache"  # its own: the test counts the tokenizers and upstreams made in it
    space = write_space(tmp_path / "space.yaml", [3e-3, 1e-3])
    argv = study_argv(study_pairs, tmp_path / "results", "sw", space, 2, 1, cache)
    argv[argv.index("--regime") + 1] = "scratch,full"
    argv[argv.index("--seeds") + 1] = "2"
    code = run_main(argv + ["--max-train-pairs", "80,40", "--pretrain-steps", "20", "--max-test-pairs", "40"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == ["sw-data-sweep", "sw-pairs40", "sw-pairs80"]
    # one tokenizer and one upstream, made once: the second study reused the first's upstream
    assert len(list((cache / "tokenizers").iterdir())) == 1
    [upstream] = list((cache / "upstream").iterdir())
    assert out.count("pretraining the tiny upstream") == 1 and out.count(f"reusing pretrained tiny upstream: {upstream}") == 1
    trained = {}
    for n in (40, 80):
        record = json.loads((results / f"sw-pairs{n}" / "study.json").read_text())
        assert record["config"]["max_train_pairs"] == n and record["config"]["train_subset"] == "nested"
        series = record["series"]
        assert series["kind"] == "data sweep" and series["sizes"] == [40, 80] and series["train_pairs"] == n
        assert series["studies"] == ["sw-pairs40", "sw-pairs80"] and series["upstream"] == str(upstream)
        # the pairs this study trained on, as its recorded config prepares them
        train = prepare_text(Config.from_dict(record["config"])).splits["train"]
        trained[n] = set(zip(train["en"], train["fr"]))
    assert len(trained[40]) == 40 and len(trained[80]) == 80 and trained[40] <= trained[80]
    sweep = results / "sw-data-sweep"
    frame = pd.read_csv(sweep / FILE)
    assert list(frame.columns) == COLUMNS
    assert list(frame["train_pairs"]) == [40] * 3 + [80] * 3
    for n in (40, 80):  # each regime's row, then the difference
        assert set(frame.loc[frame["train_pairs"] == n, "regime"].iloc[:2]) == {"scratch", "full"}
        assert frame.loc[frame["train_pairs"] == n, "regime"].iloc[2] == GAP
    scores = frame[frame["regime"] != GAP]
    assert (scores["n_seeds"] == 2).all() and scores["test_bleu_mean"].notna().all()
    gaps = frame[frame["regime"] == GAP]
    assert gaps["difference"].notna().all() and (gaps["n_fresh_full"] == 1).all()
    assert (gaps["verdict"] == INCONCLUSIVE).all()  # one fresh seed run each: no interval, never a finding
    assert "no interval: too few fresh seed runs" in closing(frame)
    assert (sweep / "plots" / "data_sweep.png").stat().st_size > 0
    assert closing(frame) in (sweep / "data_sweep.md").read_text()
    assert "subset of every larger's" in (sweep / "data_sweep.md").read_text()
    # the names are taken now: refused in one line before anything runs
    assert run_main(argv + ["--max-train-pairs", "40,80"]) == 2
    assert "sw-pairs40 exists already" in capsys.readouterr().err
