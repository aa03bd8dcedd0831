"""The study end to end on a real local Ray: ASHA pruning reaches Optuna as PRUNED, Ctrl-C + --resume loses
nothing, best.json's test BLEU is what the sacrebleu command line says, bad input writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import PRUNING_EPOCHS, optuna_trials_in, study_argv, write_space

from study.run import main as run_main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_asha_prunes_and_optuna_records_pruned(pruning_study):
    # A learning rate that learns and one that cannot: once a good trial has set the first rung,
    # ASHA must stop the hopeless ones after their first epoch. TPE seeded with 0 draws bad, good, bad, bad.
    study_dir = pruning_study.path
    trials = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}").trials
    assert len(trials) == 4
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    order = [t.params["lr"] for t in trials]
    assert 3e-3 in order and 1e-6 in order[order.index(3e-3):], f"sampling changed: {order}"
    assert pruned, [(t.params, t.state, t.intermediate_values) for t in trials]
    for t in pruned:  # stopped early, with the per-epoch values it reached, its last one included
        assert t.params["lr"] == 1e-6
        assert 1 <= len(t.intermediate_values) < PRUNING_EPOCHS
    for t in complete:
        assert sorted(t.intermediate_values) == list(range(1, PRUNING_EPOCHS + 1))
    # The Tune side agrees: pruned trials ran fewer epochs than the budget.
    results = [[json.loads(line) for line in p.read_text().splitlines()]
               for p in (study_dir / "scratch").glob("*/result.json")]
    epochs = [len(r) for r in results]
    assert sorted(epochs)[0] < PRUNING_EPOCHS and max(epochs) == PRUNING_EPOCHS
    # Trials run in a reused worker process (`reuse_actors`; Tune writes each result's `pid`), and a trial's numbers do not depend on what ran
    # there before it: the three trials at lr 1e-6 (same config, same seed) have the same first epoch.
    assert len({r[0]["pid"] for r in results}) < len(results), [r[0]["pid"] for r in results]
    hopeless = [r[0] for r in results if r[0]["config"]["lr"] == 1e-6]
    assert len(hopeless) == 3 and len({(m["train_loss"], m["val_loss"], m["val_bleu"]) for m in hopeless}) == 1

    # best.json's test BLEU is what the sacrebleu command line gives on the written files.
    best = json.loads((study_dir / "scratch" / "best.json").read_text())
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(study_dir / "scratch" / "test.ref.txt"), "-i",
                          str(study_dir / "scratch" / "test.hyp.txt"), "-m", "bleu", "-b", "-w", "4"],
                         capture_output=True, text=True, check=True)
    assert round(best["test_bleu"], 4) == float(out.stdout)
    assert best["lr"] == 3e-3 and best["best_val_bleu"] > 0
    summary = (study_dir / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("regime,best_val_bleu,test_bleu") and summary[1].startswith("scratch,")
    record = json.loads((study_dir / "study.json").read_text())
    assert record["seed"] == 0 and record["versions"]["ray"] and record["bleu_signature"].startswith("nrefs:1")
    assert "regime" in pruning_study.output  # the final summary table was printed


def _completed(db: Path) -> int:
    return optuna_trials_in(db, ("COMPLETE",))


def test_interrupted_study_resumes_without_rerunning_finished_trials(study_pairs, tmp_path):
    space = write_space(tmp_path / "space.yaml", [3e-3, 2e-3])
    # No ASHA here: this test is about resuming, and every trial must run its full budget.
    argv = study_argv(study_pairs, tmp_path / "results", "resumable", space, samples=3, epochs=2,
                      cache=study_pairs.parent / "cache") + ["--scheduler", "none"]
    study_dir = tmp_path / "results" / "resumable"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:  # a file, not a pipe: a driver blocked on a full pipe would never finish a trial
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *argv], cwd=ROOT, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while _completed(study_dir / "optuna.db") < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the study ended before it could be interrupted:\n{log.read_text()[-3000:]}"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    proc.wait(timeout=300)
    out = log.read_text()
    assert proc.returncode == 130, out[-3000:]
    assert "python -m study.run --resume resumable" in out
    assert not (study_dir / "scratch" / "best.json").exists()
    first = {p.parent.name: len(p.read_text().splitlines())
             for p in (study_dir / "scratch").glob("*/result.json") if len(p.read_text().splitlines()) == 2}
    assert len(first) >= 1

    resume = subprocess.run([sys.executable, "-m", "study.run", "--resume", "resumable", "--results",
                             str(tmp_path / "results"), "--no-analysis"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    results = {p.parent.name: p.read_text().splitlines() for p in (study_dir / "scratch").glob("*/result.json")}
    assert len(results) == 3
    for trial, lines in results.items():  # every trial finished, none ran an epoch twice
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2], trial
    for trial, n in first.items():  # the trials finished before the interruption were not re-run
        assert len(results[trial]) == n
    study = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert (study_dir / "scratch" / "best.json").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--regime", "sideways"], "unknown regime"),
    (["--preset", "huge"], "unknown preset"),
    (["--max-epochs", "0"], "--max-epochs"),
    (["--cpus-per-trial", "-1"], "--cpus-per-trial"),
    (["--resume", "no-such-study"], "no study named"),
    (["--preset", "paper"], "needs --data"),
    (["--address", "127.0.0.1:1", "--regime", "scratch"], "cannot reach a Ray cluster"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, needle, tmp_path, capsys):
    code = run_main(argv + ["--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_default_command_resolves_to_the_quick_preset_over_all_regimes():
    """`python -m study.run --regime all` with no other flag: the README's first command."""
    from study.run import build_parser, resolve

    config, budget, regimes, spaces = resolve(build_parser().parse_args(["--regime", "all"]))
    assert regimes == ["upstream", "scratch", "decoder", "full"]
    assert config.data == "sample" and config.model == "tiny" and config.regime == "full"
    assert set(spaces) == set(regimes) and set(spaces["upstream"].search) == {"num_beams"}
    for regime in ("scratch", "decoder", "full"):
        assert {"lr", "batch_size", "num_beams"} <= set(spaces[regime].search)
    assert resolve(build_parser().parse_args([]))[2] == regimes  # --regime defaults to all
