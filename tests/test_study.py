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

from study.data.sample import corpus
from study.run import main as run_main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--tiny-d-model", "64", "--tiny-layers", "2", "--tiny-heads", "4", "--tiny-d-ff", "128",
              "--tiny-vocab-size", "500", "--max-eval-pairs", "60"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "pairs.tsv"
    path.write_text("".join(f"{en}\t{fr}\n" for en, fr in corpus.generate_pairs(1500, seed=0)), encoding="utf-8")
    return path


def write_space(path: Path, lrs: list[float]) -> Path:
    path.write_text(
        "search:\n"
        f"  lr: {{distribution: choice, values: {lrs}}}\n"
        "  num_beams: {distribution: choice, values: [1]}\n"
        "fixed: {batch_size: 16}\n"
        "asha: {grace_period: 1, reduction_factor: 2}\n", encoding="utf-8")
    return path


def study_argv(pairs: Path, tmp_path: Path, name: str, space: Path, samples: int, epochs: int,
               seed: int = 0) -> list[str]:
    return ["--regime", "scratch", "--data", str(pairs), "--results", str(tmp_path / "results"), "--name", name,
            "--cache-dir", str(tmp_path.parent / "cache"), "--search-space", str(space), "--num-samples",
            str(samples), "--max-epochs", str(epochs), "--max-concurrent", "1", "--seed", str(seed), "--no-analysis",
            *TINY_FLAGS,
            # random draws seeded with --seed itself: the lr order the tests below rely on (TPE would learn)
            "--searcher", "random", "--same-draws"]


def test_asha_prunes_and_optuna_records_pruned(pairs, tmp_path, capsys):
    # A learning rate that learns and one that cannot: once a good trial has set the first rung,
    # ASHA must stop the hopeless ones after their first epoch. Random draws seeded 0: bad, good, bad, bad.
    space = write_space(tmp_path / "space.yaml", [3e-3, 1e-6])
    assert run_main(study_argv(pairs, tmp_path, "prune", space, samples=4, epochs=3)) == 0
    study_dir = tmp_path / "results" / "prune"
    trials = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}").trials
    assert len(trials) == 4
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    order = [t.params["lr"] for t in trials]
    assert 3e-3 in order and 1e-6 in order[order.index(3e-3):], f"sampling changed: {order}"
    assert pruned, [(t.params, t.state, t.intermediate_values) for t in trials]
    for t in pruned:  # stopped early, with the per-epoch values it reached, its last one included
        assert t.params["lr"] == 1e-6
        assert 1 <= len(t.intermediate_values) < 3
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3]
    # The Tune side agrees: pruned trials ran fewer epochs than the budget.
    epochs = [len(p.read_text().splitlines()) for p in (study_dir / "scratch").glob("*/result.json")]
    assert sorted(epochs)[0] < 3 and max(epochs) == 3

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
    assert "regime" in capsys.readouterr().out  # the final summary table was printed


def _completed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        study = optuna.load_study(study_name="scratch", storage=f"sqlite:///{db}")
    except Exception:  # noqa: BLE001 - the driver may not have created the study yet
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_interrupted_study_resumes_without_rerunning_finished_trials(pairs, tmp_path):
    space = write_space(tmp_path / "space.yaml", [3e-3, 2e-3])
    # No ASHA here: this test is about resuming, and every trial must run its full budget.
    argv = study_argv(pairs, tmp_path, "resumable", space, samples=3, epochs=2) + ["--scheduler", "none"]
    study_dir = tmp_path / "results" / "resumable"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "study.run", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while _completed(study_dir / "optuna.db") < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, "the study ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    out, _ = proc.communicate(timeout=180)
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


def test_invalid_search_space_file_is_rejected_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  lr: {distribution: loguniform, low: 0, high: 1}\n", encoding="utf-8")
    code = run_main(["--regime", "scratch", "--search-space", str(bad), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "loguniform bounds must be positive" in err
    assert not (tmp_path / "results").exists()


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
