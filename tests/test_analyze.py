"""The analysis on real tiny studies: its tables agree with what Ray Tune itself reads back, the CLI writes
every file, errored / half-finished / running studies are analysed without a traceback, bad paths fail
with one line and write nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import PRUNING_EPOCHS, study_argv, write_space

from study.analyze import load, main
from study.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]
MAX_EPOCHS = PRUNING_EPOCHS
PLOTS = ("learning_curves.png", "hyperparameters.png", "epoch_time.png")
slow = pytest.mark.slow  # starts a local Ray and trains tiny models


@pytest.fixture(scope="module")
def studies(pruning_study, study_pairs) -> Path:
    """A results folder with two real studies of `scratch`: `pruned` (the session's shared pruning study: TPE
    seeded 0 draws bad, good, bad, bad lr, and ASHA stops the later bad ones) and `errored` (every trial asks
    for CUDA and is given no GPU, so it fails on any machine: conftest hides GPUs from zero-GPU trials)."""
    results = pruning_study.path.parent
    cuda = write_space(results.parent / "cuda.yaml", [3e-3], "{batch_size: 16, device: cuda}")
    argv = study_argv(study_pairs, results, "errored", cuda, 2, 1, study_pairs.parent / "cache")
    assert run_main(argv + ["--max-failures", "0"]) == 2  # no trial scored
    return results


def _copy(studies: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(studies / name, tmp_path / name))


@slow
def test_tables_agree_with_what_ray_reads_back(studies):
    from ray.tune import ExperimentAnalysis

    study = studies / "pruned"
    a = load(study)
    ray = ExperimentAnalysis(str(study / "scratch"))
    trials = a.trials.set_index("trial_id")
    assert sorted(trials.index) == sorted(t.trial_id for t in ray.trials) and len(trials) == 4
    for trial in ray.trials:
        history = ray.trial_dataframes[trial.trial_id].sort_values("epoch")
        row = trials.loc[trial.trial_id]
        assert row["reports"] == len(history) and row["epochs_run"] == history["epoch"].max()
        assert row["best_val_bleu"] == pytest.approx(history["val_bleu"].max())
        assert row["wall_s"] == pytest.approx(history["time_total_s"].iloc[-1])
        assert row["lr"] == trial.config["lr"] and row["node_id"] == history["node_id"].iloc[-1]
        expected = "errored" if trial.status == "ERROR" else "finished" if len(history) == MAX_EPOCHS else "pruned"
        assert row["status"] == expected, (trial.trial_id, trial.status, len(history))
        curve = a.epochs[a.epochs["trial_id"] == trial.trial_id].sort_values("epoch")
        assert curve["epoch"].tolist() == history["epoch"].tolist()
        assert curve["val_loss"].tolist() == pytest.approx(history["val_loss"].tolist())
        assert curve["val_bleu"].tolist() == pytest.approx(history["val_bleu"].tolist())
        assert curve["val_bleu_greedy"].tolist() == pytest.approx(history["val_bleu_greedy"].tolist())  # ASHA's rungs
    assert set(trials["status"]) == {"finished", "pruned"}
    assert (trials.loc[trials["status"] == "pruned", "lr"] == 1e-6).all()

    best_json = json.loads((study / "scratch" / "best.json").read_text())
    best_id = ray.get_best_trial("val_bleu", "max", scope="all").trial_id
    assert best_json["trial_id"] == best_id and trials.loc[best_id, "is_best"] and trials["is_best"].sum() == 1
    best = a.best.set_index("regime").loc["scratch"]
    assert best["test_bleu"] == best_json["test_bleu"] and best["trainable_params"] == best_json["trainable_params"] > 0
    row = a.comparison.set_index("regime").loc["scratch"]
    assert row["state"] == "finished" and a.unfinished == []
    assert row["test_bleu"] == best_json["test_bleu"] and row["test_chrf"] == best_json["test_chrf"]
    assert row["lr"] == 3e-3 and row["best_epoch"] == best_json["best_epoch"]
    assert row["trials"] == 4 and row["pruned"] == best_json["pruned"] == (trials["status"] == "pruned").sum()
    assert row["search_wall_s"] == best_json["search_wall_s"] and "cost_usd" not in a.comparison
    # BLEU's parts come from the regime's saved test translations, scored as the study scored them
    import sacrebleu

    hyps, refs = ((study / "scratch" / f"test.{k}.txt").read_text(encoding="utf-8").split("\n")[:-1]
                  for k in ("hyp", "ref"))
    assert len(refs) == best_json["test_pairs"]
    bleu = sacrebleu.metrics.BLEU().corpus_score(hyps, [refs])
    assert bleu.score == pytest.approx(best_json["test_bleu"])
    assert [row[f"test_bleu_p{n}"] for n in (1, 2, 3, 4)] == pytest.approx(bleu.precisions)
    assert row["test_brevity_penalty"] == pytest.approx(bleu.bp)
    assert row["test_length_ratio"] == pytest.approx(bleu.sys_len / bleu.ref_len)


@slow
def test_errored_trials_are_reported(studies, capsys):
    from ray.tune import ExperimentAnalysis, ResultGrid

    study = studies / "errored"
    analysis = ExperimentAnalysis(str(study / "scratch"))
    grid = ResultGrid(analysis)
    assert grid.num_errors == len(grid) == 2
    a = load(study)
    assert sorted(a.trials["trial_id"]) == sorted(t.trial_id for t in analysis.trials if t.status == "ERROR")
    assert (a.trials["status"] == "errored").all() and a.epochs.empty
    assert all("cuda" in line.lower() for line in a.trials["error"]), a.trials["error"].tolist()
    row = a.comparison.set_index("regime").loc["scratch"]
    assert row["state"] == "unfinished" and row["errored"] == row["trials"] == 2 and pd.isna(row["test_bleu"])

    assert main([str(study)]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "unfinished regimes (no best.json yet): scratch" in out.out
    report = (study / "report.md").read_text()
    assert "2 trial(s) errored (2 in `scratch`)" in report and "all 2 trial(s) errored" in report
    assert not (study / "plots").exists() and "![" not in report  # no epoch was reported: nothing to draw


@slow
def test_regimes_side_by_side_are_billed_their_trials_time_not_the_walls_they_shared(studies, tmp_path):
    """One regime at a time, a search is billed its wall time (idle slots included); side by side the regimes
    share the cluster, and each is billed its trials' own time over the slots, so the bills add up."""
    study = _copy(studies, "pruned", tmp_path)
    alone = load(study, gpu_hour_cost=3).comparison.set_index("regime").loc["scratch"]
    assert alone["cost_usd"] == pytest.approx(alone["search_wall_s"] / 3600 * 3)
    record = json.loads((study / "study.json").read_text())
    record["budget"]["regimes_at_once"] = 1  # a second regime, but one at a time: still billed its wall
    record["regimes"] = ["scratch", "full"]
    (study / "study.json").write_text(json.dumps(record))
    apart = load(study, gpu_hour_cost=3).comparison.set_index("regime").loc["scratch"]
    assert apart["cost_usd"] == pytest.approx(alone["cost_usd"])
    record["budget"]["regimes_at_once"] = 0  # all side by side, as study.run records it by default now
    (study / "study.json").write_text(json.dumps(record))
    a = load(study, gpu_hour_cost=3)
    shared = a.comparison.set_index("regime").loc["scratch"]
    trials_time = a.trials[a.trials["regime"] == "scratch"]["wall_s"].sum()
    assert shared["search_trial_s"] == pytest.approx(trials_time) and trials_time > 0
    slots = record["budget"]["max_concurrent"]
    assert shared["cost_usd"] == pytest.approx(trials_time / slots / 3600 * 3)
    assert shared["cost_usd"] < alone["cost_usd"]


@slow
def test_cli_writes_every_file(studies, tmp_path, capsys):
    study = _copy(studies, "pruned", tmp_path)
    assert main([str(study), "--gpu-hour-cost", "3"]) == 0
    out = capsys.readouterr().out
    assert f"report: {study / 'report.md'}" in out and "scratch" in out
    csv = pd.read_csv(study / "comparison.csv")
    parquet = pd.read_parquet(study / "comparison.parquet")
    assert list(csv.columns) == list(parquet.columns) and csv["regime"].tolist() == parquet["regime"].tolist() == ["scratch"]
    assert csv["test_bleu"].iloc[0] == pytest.approx(parquet["test_bleu"].iloc[0])
    # A CPU-only study is billed as one machine at the given rate.
    assert csv["cost_usd"].iloc[0] == pytest.approx(csv["search_wall_s"].iloc[0] / 3600 * 3)
    assert (study / "comparison.md").read_text().startswith("| regime | state | test BLEU |")
    report = (study / "report.md").read_text()
    for name in PLOTS:
        png = study / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert f"](plots/{name})" in report
    best = json.loads((study / "scratch" / "best.json").read_text())
    assert f"Only `scratch` has a test score so far ({best['test_bleu']:.2f} BLEU)" in report
    assert "This tiny upstream" not in report  # no upstream regime in this study
    assert "different model (`tiny`)" in report and "53.88" in report and "Total: " in report


@slow
def test_report_names_the_winner_and_calls_small_gaps_noise(studies, tmp_path):
    # A second finished regime: the real `scratch` search copied as `full`, its test BLEU set by hand.
    study = _copy(studies, "pruned", tmp_path)
    shutil.copytree(study / "scratch", study / "full")
    record = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps({**record, "regimes": ["scratch", "full"]}))
    scratch_best = json.loads((study / "scratch" / "best.json").read_text())
    scratch, scratch_loss = scratch_best["test_bleu"], scratch_best["test_loss"]
    # (BLEU gap, loss gap): when loss and BLEU disagree, the report says so instead of picking one
    # Both regimes' translations are the same file, so whatever their best.json says, the paired bootstrap
    # finds no difference: the report must not call either gap a finding.
    for gap, loss_gap, words in ((5.0, 0.1, "higher with pre-training"),
                                 (0.4, -0.1, "higher with pre-training")):
        best = json.loads((study / "full" / "best.json").read_text())
        (study / "full" / "best.json").write_text(json.dumps({**best, "regime": "full", "test_bleu": scratch + gap,
                                                              "test_loss": scratch_loss + loss_gap}))
        assert main([str(study), "--no-plots"]) == 0
        report = (study / "report.md").read_text()
        assert f"`full` won on test BLEU with {scratch + gap:.2f}, {gap:.2f} ahead of `scratch` ({scratch:.2f})" in report
        assert words in report
        assert ("Test loss says the opposite" in report) == (loss_gap > 0)
        # ... and BLEU's parts say whether the lower-BLEU regime is short or wrong (here both are scratch's
        # translations, so the parts are equal and neither reason is claimed)
        assert ("BLEU's parts: `scratch` writes" in report) == (loss_gap > 0)
        assert "shorter" not in report and "fewer of its words" not in report
        assert "`full` − `scratch`: +0.00 BLEU" in report and "inconclusive at this budget" in report
        assert "a finding, `" not in report and "| finding |" not in report


@slow
def test_half_finished_and_running_study(studies, tmp_path, capsys):
    study = _copy(studies, "pruned", tmp_path)
    (study / "scratch" / "best.json").unlink()  # the search of scratch has not ended
    record = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps({**record, "regimes": ["scratch", "full"]}))  # full not started
    # One trial running at the last snapshot, with an epoch line being written ...
    state_file = sorted((study / "scratch").glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    trial = json.loads(state["trial_data"][-1][0])
    state["trial_data"][-1][0] = json.dumps({**trial, "status": "RUNNING"})
    state_file.write_text(json.dumps(state))
    with open(study / "scratch" / trial["relative_logdir"] / "result.json", "a") as f:
        f.write('{"val_loss": 3.1, "epo')
    # ... and one just started: a directory with params.json only, not in any snapshot yet.
    fresh = study / "scratch" / "trial_5_abcdef12"
    fresh.mkdir()
    (fresh / "params.json").write_text(json.dumps({"lr": 3e-3, "num_beams": 1}))

    a = load(study)
    trials = a.trials.set_index("trial_id")
    assert trials.loc[trial["trial_id"], "status"] == "running" and trials.loc["abcdef12", "status"] == "running"
    assert trials.loc["abcdef12", "reports"] == 0 and trials.loc["abcdef12", "lr"] == 3e-3
    assert a.unfinished == ["scratch", "full"] and a.best.empty
    rows = a.comparison.set_index("regime")
    assert rows.loc["scratch", "state"] == "unfinished" and pd.isna(rows.loc["scratch", "test_bleu"])
    assert rows.loc["scratch", "best_val_bleu"] == pytest.approx(trials["best_val_bleu"].max())
    assert rows.loc["scratch", "trials"] == 5 and rows.loc["scratch", "running"] == 2
    assert rows.loc["full", "state"] == "not started" and rows.loc["full", "trials"] == 0

    assert main([str(study)]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "unfinished regimes (no best.json yet): scratch, full" in out.out
    report = (study / "report.md").read_text()
    assert "**Unfinished: `scratch`, `full`.**" in report and "`full` has not started." in report
    assert "`scratch` is unfinished (no best.json yet): 5 trial(s) so far, 2 running or pending" in report
    assert "No regime has finished yet" in report
    assert all((study / "plots" / name).exists() for name in PLOTS)


@slow
def test_cli_analyses_a_study_at_a_uri(studies, tmp_path, capsys):
    # The study at a file:// URI (as at s3://): pulled into a staging folder, analysed, and only the
    # analysis pushed back next to it; the same files as for the study analysed in place.
    study = _copy(studies, "pruned", tmp_path / "bucket")
    before = {p: p.stat().st_mtime_ns for p in study.rglob("*") if p.is_file()}
    cache = tmp_path / "cache"
    uri = study.as_uri()
    assert uri.startswith("file:///") and main([uri, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr()
    assert out.err == "" and f"report: {uri}/report.md" in out.out
    in_place = _copy(studies, "pruned", tmp_path / "local")
    assert main([str(in_place)]) == 0
    # The same outputs as the analysis in place writes (whichever plots this study has data for), at least
    # the report, the tables and the three plots every study gets.
    outputs = {p.relative_to(in_place).as_posix() for p in in_place.rglob("*") if p.is_file()} - {
        p.relative_to(study).as_posix() for p in before}
    assert outputs >= {"report.md", "comparison.csv", "comparison.md", "comparison.parquet",
                       *(f"plots/{n}" for n in PLOTS)}
    after = {p.relative_to(study).as_posix() for p in study.rglob("*") if p.is_file()}
    assert after - {p.relative_to(study).as_posix() for p in before} == outputs
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items())  # the study's own files untouched
    for name in outputs - {"comparison.parquet"}:
        assert (study / name).read_bytes() == (in_place / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(study / "comparison.parquet"),
                                  pd.read_parquet(in_place / "comparison.parquet"))

    a = load(uri, cache_dir=cache)
    assert len(a.trials) == 4 and a.path.is_relative_to(cache / "analysis") and a.path.name == "pruned"
    assert not list(a.path.rglob("checkpoint_*"))


def test_bad_uri_is_one_line_and_writes_nothing(tmp_path, capsys):
    for uri, needle in (((tmp_path / "missing").as_uri(), "is not a study (no study.json there)"),
                        ("file:///", "names no study"), ("nosuch://bucket/prefix/study", "cannot open")):
        assert main([uri, "--cache-dir", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


@slow
def test_load_needs_no_ray(studies):
    code = (f"import sys; from study.analyze import load; a = load({str(studies / 'pruned')!r}); "
            "assert len(a.trials) == 4; assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


STUDY_JSON = {"name": "empty", "preset": "quick", "regimes": ["scratch"], "seed": 0, "config": {"epochs": 3},
              "budget": {"max_epochs": 3}}


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "notes.txt").write_text("hi") and d, "not a study directory (no readable study.json)"),
    # a study.json that does not parse is named as the damaged file (issue 28), not as a missing study
    (lambda d: (d / "study.json").write_text("{not json") and d, "study.json is damaged: not valid JSON"),
    (lambda d: (d / "study.json").write_text(json.dumps(STUDY_JSON)) and d, "has no trials yet"),
    (lambda d: (d / "study.json").write_text(json.dumps(STUDY_JSON)) and (d / "scratch").mkdir() is None
     and (d / "scratch" / "tuner.pkl").write_bytes(b"x") and d, "has no trials yet"),
])
def test_bad_input_is_one_line_and_writes_nothing(make, needle, tmp_path, capsys):
    path = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert sorted(tmp_path.rglob("*")) == before


def test_negative_cost_is_rejected(tmp_path, capsys):
    (tmp_path / "study.json").write_text(json.dumps(STUDY_JSON))
    assert main([str(tmp_path), "--gpu-hour-cost", "-1"]) == 2
    assert "--gpu-hour-cost must be a non-negative" in capsys.readouterr().err


def test_bleu_parts_tell_short_output_from_wrong_words():
    from study.analysis.report import _bleu_parts_sentence

    # the quick study's decoder against scratch (2026-11-30): longer output, lower unigram precision
    c = pd.DataFrame({"test_length_ratio": [0.948, 0.867], "test_brevity_penalty": [0.947, 0.858],
                      "test_bleu_p1": [49.7, 63.1]}, index=["decoder", "scratch"])
    said = _bleu_parts_sentence(c, worse="decoder", better="scratch")
    assert "`decoder` writes 0.95× the references' length (brevity penalty 0.947; `scratch` 0.87×, 0.858)" in said
    assert said.endswith("unigram precision 49.7 against 63.1: no shorter, but fewer of its words are right.")
    assert _bleu_parts_sentence(c, worse="scratch", better="decoder").endswith(": its output is shorter.")
    assert _bleu_parts_sentence(c.drop(columns="test_bleu_p1"), "decoder", "scratch") == ""  # an older study
    c.loc["scratch", "test_brevity_penalty"] = float("nan")
    assert _bleu_parts_sentence(c, "decoder", "scratch") == ""


# --- several studies in one view ------------------------------------------------------------------------------


def _variant(real: Path, out: Path, decoder_gap: float, data: str | None = None, num_samples: int | None = None) -> Path:
    """A copy of the real study with a second finished regime, `decoder`, scoring `decoder_gap` test BLEU above
    its `scratch` (its folder a copy of scratch's, its best.json edited), and optionally other data or budget."""
    study = Path(shutil.copytree(real, out))
    shutil.copytree(study / "scratch", study / "decoder")
    best = json.loads((study / "decoder" / "best.json").read_text())
    best |= {"regime": "decoder", "test_bleu": best["test_bleu"] + decoder_gap}
    (study / "decoder" / "best.json").write_text(json.dumps(best))
    record = json.loads((study / "study.json").read_text())
    record["regimes"] = ["scratch", "decoder"]
    if data:
        record["config"]["data"] = data
    if num_samples:
        record["budget"]["num_samples"] = num_samples
    (study / "study.json").write_text(json.dumps(record))
    return study


@slow
def test_several_studies_in_one_view(pruning_study, tmp_path, capsys):
    import statistics

    from study.analysis.compare import compare

    real = pruning_study.path
    scratch = json.loads((real / "scratch" / "best.json").read_text())["test_bleu"]
    a = _variant(real, tmp_path / "a", 1.0)
    b = _variant(real, tmp_path / "b", 2.5)
    c = _variant(real, tmp_path / "c", -0.5, data="/elsewhere/other.tsv", num_samples=8)
    view = compare([a, b, c])
    table = view.table.set_index("regime")
    decoder = [scratch + 1.0, scratch + 2.5, scratch - 0.5]
    assert table.loc["decoder", "test_bleu_mean"] == pytest.approx(statistics.mean(decoder))
    assert table.loc["decoder", "test_bleu_sd"] == pytest.approx(statistics.stdev(decoder))
    assert list(table.loc["decoder", ["a", "b", "c"]]) == pytest.approx(decoder)
    assert table.loc["scratch", "test_bleu_mean"] == pytest.approx(scratch) and table.loc["scratch", "studies"] == 3
    assert dict(zip(view.rankings["study"], view.rankings["ranking"])) == {
        "a": "decoder > scratch", "b": "decoder > scratch", "c": "scratch > decoder"}
    assert dict(zip(view.ranking_counts["ranking"], view.ranking_counts["studies"])) == {
        "decoder > scratch": 2, "scratch > decoder": 1}
    assert view.differences == ["data: config.data", "budget: budget.num_samples"] and not view.comparable
    assert compare([a, b]).comparable  # the same settings: only their scores differ

    # the command, with the real study itself among them: it has no decoder, which the report says
    out = tmp_path / "view"
    assert main([str(a), str(b), str(real), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "regimes `finished regimes`" in (out / "cross_study.md").read_text() and "regimes" in printed
    frame = pd.read_csv(out / "cross_study.csv").set_index("regime")
    assert frame.loc["scratch", "pruned"] == pytest.approx(scratch) and pd.isna(frame.loc["decoder", "pruned"])
    assert frame.loc["scratch", "studies"] == 3 and frame.loc["decoder", "studies"] == 2
    rankings = pd.read_csv(out / "rankings.csv").set_index("study")
    assert rankings.loc["pruned", "ranking"] == "scratch" and rankings.loc["a", "studies_with_this_ranking"] == 2
    assert (out / "plots" / "cross_study.png").stat().st_size > 0 and (out / "settings.csv").exists()

    # bad input: one line each
    assert main([str(a), str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert main([str(a), str(b), "--out", str(a)]) == 2
    assert "one of the studies compared" in capsys.readouterr().err
