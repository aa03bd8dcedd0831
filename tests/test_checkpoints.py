"""Checkpoints are plain data (a checkpoint that would run code is refused, not opened); a study interrupted
with Ctrl-C resumes from them without re-running a trial, and keeps only the checkpoints it needs: a running
trial's, and its regime's best (model only once scored)."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import SMALL_FLAGS, SMALL_MODEL, cli_flags, optuna_trials_in, write_pairs
from transformers import T5Config, T5ForConditionalGeneration

from study.config import Config, StudyError
from study.data.prepared import prepare_data
from study.training.checkpoints import (
    CHECKPOINT_FILE,
    load_checkpoint,
    load_for_resume,
    load_trained_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
    strip_to_model,
)
from study.training.loop import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(**SMALL_MODEL, max_eval_pairs=20, eval_batch_size=32, batch_size=16, epochs=2, lr=3e-3, torch_threads=1)
TRIAL_FLAGS = cli_flags(SMALL)  # study.trial's flags for SMALL


class CreatesFile:
    """Unpickling this calls open(marker, "w"): the file appears only if the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("checkpoints")
    return Config(data=str(write_pairs(root / "pairs.tsv", 200)), cache_dir=str(root / "cache"), regime="scratch",
                  **SMALL)


def _tiny_training_state():
    model = T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                                num_heads=2, decoder_start_token_id=0))
    optimizer, scheduler = make_optimizer(model, Config(), total_steps=10)
    ids = torch.randint(0, 50, (2, 5))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_loads_as_plain_data_and_restores_every_rng(tmp_path):
    model, optimizer, scheduler = _tiny_training_state()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state, which must survive too
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=1, config=Config())
    expected = (random.gauss(0, 1), random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())

    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # raises if anything needs unpickling
    assert state["epoch"] == 1 and set(state["optimizer"]["state"])
    assert torch.equal(state["model"]["shared.weight"], model.state_dict()["shared.weight"])
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path)["rng"])
    assert (random.gauss(0, 1), random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected
    assert rng_state()["python"]["version"] == random.getstate()[0]


def test_code_in_a_checkpoint_is_refused_by_scoring_and_resume(small_config, tmp_path):
    """A checkpoint whose pickle creates a file: scoring it and resuming from it both refuse with one line,
    and the file never appears."""
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "results" / "s" / "scratch" / "trial_0_00000" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    torch.save({"model": CreatesFile(marker), "epoch": 1}, checkpoint / CHECKPOINT_FILE)
    # The payload is real: an unrestricted unpickle runs it.
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(CreatesFile(witness))).close()
    assert witness.exists()

    data = prepare_data(small_config)
    with pytest.raises(StudyError, match="refusing to load .*could run code") as err:  # what test scoring calls
        load_trained_model(small_config, data.tokenizer, checkpoint)
    assert "\n" not in str(err.value)
    assert not marker.exists()

    run = subprocess.run([sys.executable, "-m", "study.trial", "--regime", "scratch", "--data", small_config.data,
                          "--cache-dir", small_config.cache_dir, *TRIAL_FLAGS, "--checkpoint-dir", str(checkpoint),
                          "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing to load" in errors[0], run.stderr[-2000:]
    assert not marker.exists()


def test_a_stripped_checkpoint_scores_but_does_not_resume(tmp_path):
    model, optimizer, scheduler = _tiny_training_state()
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=2, config=Config())
    full_size = (tmp_path / CHECKPOINT_FILE).stat().st_size
    strip_to_model(tmp_path)
    state = load_checkpoint(tmp_path)
    assert not {"optimizer", "scheduler", "rng"} & set(state)
    assert torch.equal(state["model"]["lm_head.weight"], model.state_dict()["lm_head.weight"])
    assert (tmp_path / CHECKPOINT_FILE).stat().st_size < full_size / 2  # AdamW's two moments are gone
    with pytest.raises(StudyError, match="cannot be resumed"):
        load_for_resume(tmp_path)


# --- what a study keeps on disk ------------------------------------------------------------------------


def _checkpoints(trial_dir: Path) -> list[Path]:
    return sorted(trial_dir.glob("checkpoint_*"))


def _results(study_dir: Path) -> dict[str, list[dict]]:
    found = {p.parent.name: [json.loads(line) for line in p.read_text().splitlines()]
             for p in (study_dir / "scratch").glob("trial_*/result.json")}
    return {name: rows for name, rows in found.items() if rows}  # a trial just started has reported nothing


def _finished(db: Path) -> int:
    return optuna_trials_in(db, ("COMPLETE", "PRUNED", "FAIL"))  # what optuna's TrialState.is_finished() counts


@pytest.mark.slow
def test_interrupted_study_resumes_without_rerunning_and_keeps_only_the_checkpoints_it_needs(tmp_path):
    """Ctrl-C mid-study, then --resume: the trials that had ended are not re-run, the one running goes on from
    its checkpoint (no epoch twice), and the study finishes. ASHA prunes the hopeless learning rates; the pruned
    and the beaten trials have no checkpoint left, and the best trial keeps one, model only, which test scoring
    read."""
    pairs = write_pairs(tmp_path / "pairs.tsv", 400)
    space = tmp_path / "space.yaml"
    # A continuous range: no two trials share a learning rate, so no two tie on validation BLEU.
    space.write_text("search:\n  lr: {distribution: loguniform, low: 1.0e-6, high: 5.0e-3}\n"
                     "fixed: {batch_size: 16}\nasha: {grace_period: 1, reduction_factor: 2}\n", encoding="utf-8")
    argv = ["--regime", "scratch", "--data", str(pairs), "--results", str(tmp_path / "results"), "--name", "kept",
            "--cache-dir", str(tmp_path / "cache"), "--search-space", str(space), "--num-samples", "4",
            "--max-epochs", "2", "--max-concurrent", "1", "--seed", "0", "--no-analysis", *SMALL_FLAGS,
            "--max-eval-pairs", "20", "--device", "cpu", "--gpus-per-trial", "0",
            "--seeds", "1"]  # the seed re-runs' checkpoints: test_conclusions.py
    study_dir = tmp_path / "results" / "kept"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:  # a file, not a pipe: a driver blocked on a full pipe would never finish a trial
        # started with SIGINT ignored, as a script's background job is: the study's own handler still stops it
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *argv], cwd=ROOT, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 600
    while _finished(study_dir / "optuna.db") < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.fail(f"the study ended (exit {proc.returncode}) before it could be interrupted:\n"
                    + log.read_text()[-4000:])
    ended_count = _finished(study_dir / "optuna.db")
    assert ended_count >= 2, "no two trials finished in time"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    proc.wait(timeout=600)
    out = log.read_text()
    assert proc.returncode == 130, out[-3000:]
    assert "python -m study.run --resume kept" in out  # the driver says how to go on
    assert not (study_dir / "scratch" / "best.json").exists()  # nothing scored from a half-done search
    # During the search: a trial that has ended (finished or pruned) and is beaten keeps no checkpoint.
    # Trials run one at a time, so the first `ended_count` started are those Optuna had seen end.
    results = _results(study_dir)
    by_start = sorted(results, key=lambda name: results[name][0]["timestamp"])
    ended = {name: max(r["val_bleu"] for r in results[name]) for name in by_start[:ended_count]}
    top = max(max(r["val_bleu"] for r in rows) for rows in results.values())
    beaten = [name for name, bleu in ended.items() if bleu < top]
    assert beaten, f"sampling changed: no ended trial was beaten before the interruption ({results})"
    for name in beaten:
        assert not _checkpoints(study_dir / "scratch" / name), name
    assert any(_checkpoints(study_dir / "scratch" / name) for name in results if name not in beaten)
    reported = {name: len(results[name]) for name in ended}

    resume = subprocess.run([sys.executable, "-m", "study.run", "--resume", "kept", "--results",
                             str(tmp_path / "results"), "--no-analysis"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    trials = _results(study_dir)
    assert len(trials) == 4
    for name, rows in trials.items():  # every trial ran its epochs once each, in order: none ran one twice
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)), (name, rows)
    for name, n in reported.items():  # the trials that had ended before the interruption were not re-run
        assert len(trials[name]) == n, name
    states = [t.state.name for t in optuna.load_study(
        study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}").trials]
    assert len(states) == 4 and set(states) <= {"COMPLETE", "PRUNED"}, states
    pruned = [name for name, rows in trials.items() if len(rows) < 2]
    assert pruned, {name: len(rows) for name, rows in trials.items()}
    best = json.loads((study_dir / "scratch" / "best.json").read_text())
    best_dir = next(name for name, rows in trials.items() if rows[0]["trial_id"] == best["trial_id"])
    for name in trials:
        kept = _checkpoints(study_dir / "scratch" / name)
        assert len(kept) == (1 if name == best_dir else 0), (name, kept)
    kept = _checkpoints(study_dir / "scratch" / best_dir)[0]
    assert Path(best["checkpoint"]) == kept
    assert sorted(study_dir.rglob("checkpoint_*")) == [kept]  # nothing elsewhere either
    assert "optimizer" not in load_checkpoint(kept) and best["test_bleu"] >= 0


def test_an_errored_trial_keeps_its_checkpoint_for_resume_while_beaten_ended_ones_lose_theirs(tmp_path):
    """CheckpointRetention over real trial folders: a finished trial beaten by the best loses its checkpoints;
    an errored one (retries used up) keeps them, since `--resume` continues it from its latest (README)."""
    from types import SimpleNamespace

    from pyarrow import fs

    from study.tuning.retention import CheckpointRetention

    def trial(name: str, best: float, status: str):
        path = tmp_path / name
        (path / "checkpoint_000000").mkdir(parents=True)
        (path / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"x")
        checkpoint = SimpleNamespace(filesystem=fs.LocalFileSystem(), path=str(path / "checkpoint_000000"))
        return SimpleNamespace(trial_id=name, status=status, path=str(path), checkpoint=checkpoint,
                               metric_analysis={"val_bleu": {"max": best}})

    best, beaten, errored = trial("best", 9.0, "TERMINATED"), trial("beaten", 2.0, "RUNNING"), \
        trial("errored", 1.0, "RUNNING")
    trials = [best, beaten, errored]
    retention = CheckpointRetention()
    retention.on_trial_error(0, trials, errored)
    retention.on_trial_complete(0, trials, beaten)
    assert not (tmp_path / "beaten" / "checkpoint_000000").exists()
    assert (tmp_path / "errored" / "checkpoint_000000" / "checkpoint.pt").is_file()  # resume starts from it
    assert (tmp_path / "best" / "checkpoint_000000").exists()
    errored.status = "ERROR"  # as Tune marks it afterwards: still kept when a later trial ends
    retention.on_trial_complete(0, trials, best)
    assert (tmp_path / "errored" / "checkpoint_000000").exists()
