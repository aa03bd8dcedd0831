"""Resuming keeps its promise (issue 28, items 2 and 3).

A study interrupted at any step of a regime's wrap-up — before its seed re-runs, before its test scoring,
before its export, before its pruning — resumes to the files an uninterrupted study with the same flags
writes: the same scores and test hypotheses, the same exported model, the same checkpoints left, the test split
counted once.

The interruption is a real Ctrl-C as the driver sees one between Tune searches (a KeyboardInterrupt raised
where the named step is about to start); the study says how to resume and exits 130, then `--resume` goes on.

A study killed mid-search (Ctrl-C on the driver) and resumed has ASHA stop the trials an uninterrupted study
with the same seed stops: Ray saves no scheduler with an experiment, so the study refills ASHA's rungs from the
saved results (`study.tuning.internals.restore_asha_rungs`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import STUDY_FLAGS, optuna_trials_in, study_argv, write_space

from study import run as study_run

pytestmark = pytest.mark.slow  # small Ray studies, seven of them
ROOT = Path(__file__).resolve().parents[1]

# Run-to-run bookkeeping that differs between any two studies, interrupted or not: wall times, Ray node ids,
# Tune's random trial ids, and absolute paths (compared below by what they point to).
VOLATILE = {"search_wall_s", "trial_wall_s", "test_scoring_task_s", "scored_node_id", "scored_node_ip", "node_id", "trial_id", "checkpoint"}


def _argv(pairs: Path, results: Path, name: str, space: Path, cache: Path) -> list[str]:
    # two trials of one epoch and one seed re-run: every wrap-up step has something to do
    return study_argv(pairs, results, name, space, 2, 1, cache) + ["--seeds", "2"]


def _interrupt_at(monkeypatch, step: str) -> None:
    """Ctrl-C just as the regime's wrap-up step `step` is about to start."""
    original = study_run.Timings.regime_phase

    def regime_phase(self, regime, name):
        if name == step:
            raise KeyboardInterrupt
        return original(self, regime, name)

    monkeypatch.setattr(study_run.Timings, "regime_phase", regime_phase)


def _trial_lr(trial_dir: Path) -> float:
    return json.loads((trial_dir / "params.json").read_text())["lr"]


def _checkpoints_left(study: Path) -> list[tuple[str, float, str]]:
    """Every checkpoint folder still on disk, named by what it is rather than where: (experiment, lr, folder)."""
    return sorted((c.parent.parent.name, _trial_lr(c.parent), c.name) for c in study.rglob("checkpoint_*"))


def _files(study: Path) -> dict:
    """What a user reads from a finished study, without the bookkeeping that differs between any two runs."""
    best = json.loads((study / "scratch" / "best.json").read_text())
    scored = Path(best["checkpoint"])
    seeds = [{k: v for k, v in s.items() if k not in VOLATILE} for s in best["seeds"]]
    model = study / "scratch" / "model"
    summary = pd.read_csv(study / "summary.csv").drop(columns=["search_wall_s", "trial_wall_s"], errors="ignore")
    return {
        "best": {k: v for k, v in best.items() if k not in VOLATILE | {"seeds", "config"}},
        "seeds": seeds,
        "config": {k: v for k, v in best["config"].items() if k not in {"cache_dir"}},
        "scored_checkpoint": (_trial_lr(scored.parent), scored.name),
        "texts": {p.name: p.read_text() for p in sorted((study / "scratch").glob("test.*.txt"))},
        "model_files": sorted(p.name for p in model.iterdir()),
        "model_config": (model / "config.json").read_text(),
        "weights": (model / "model.safetensors").read_bytes(),
        "checkpoints_left": _checkpoints_left(study),
        "test_scored": json.loads((study / "study.json").read_text())["test_scored"],
        "summary": summary.to_dict("records"),
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory, study_pairs):
    root = tmp_path_factory.mktemp("wrap-up")
    space = write_space(root / "space.yaml", [3e-3, 1e-3])
    cache = study_pairs.parent / "cache"
    return root, space, cache


@pytest.fixture(scope="module")
def uninterrupted(setup, study_pairs) -> dict:
    root, space, cache = setup
    assert study_run.main(_argv(study_pairs, root / "results", "whole", space, cache)) == 0
    files = _files(root / "results" / "whole")
    assert len(files["seeds"]) == 2 and files["checkpoints_left"] == [("scratch", files["scored_checkpoint"][0],
                                                                        files["scored_checkpoint"][1])]
    return files


@pytest.mark.parametrize("steps", [
    # one study interrupted three times: before its seed re-runs, before its scoring, before its export
    ["seed_runs", "test_scoring", "export"],
    # one interrupted after its export, before its pruning (the step a resume used to skip)
    ["pruning"],
], ids=["before-seed-runs-scoring-export", "before-pruning"])
def test_an_interruption_at_each_wrap_up_step_resumes_to_the_uninterrupted_files(
        steps, setup, study_pairs, uninterrupted, monkeypatch, capsys):
    root, space, cache = setup
    name = "cut-" + "-".join(steps)
    argv = _argv(study_pairs, root / "results", name, space, cache)
    resume = ["--resume", name, "--results", str(root / "results"), "--no-analysis"]
    for i, step in enumerate(steps):
        with monkeypatch.context() as patch:
            _interrupt_at(patch, step)
            assert study_run.main(argv if i == 0 else resume) == 130, step
        assert f"python -m study.run --resume {name}" in capsys.readouterr().out, step
    assert study_run.main(resume) == 0
    resumed = _files(root / "results" / name)
    for key, expected in uninterrupted.items():
        assert resumed[key] == expected, key


# ----------------------------------------------------------------------------------------- ASHA after a resume

# Five fixed points, run one at a time in this order (the space's start points: no sampler decides), ASHA judging
# a trial after its first epoch by validation loss: the first learns, the four after it can barely move, each
# less than the one before (a smaller learning rate from the same initialisation), so each is stopped at rung 1.
ASHA_SPACE = """search:
  lr: {distribution: loguniform, low: 1.0e-9, high: 5.0e-3}
fixed: {batch_size: 16}
asha: {grace_period: 1, reduction_factor: 2, rung_metric: val_loss}
start: [{lr: 3.0e-3}, {lr: 1.0e-5}, {lr: 1.0e-6}, {lr: 1.0e-7}, {lr: 1.0e-8}]
"""


def _epochs_by_lr(study: Path) -> list[tuple[float, int]]:
    """(lr, epochs run) of each trial, in the order the trials started."""
    trials = [[json.loads(line) for line in p.read_text().splitlines()]
              for p in (study / "scratch").glob("trial_*/result.json")]
    trials = sorted((rows for rows in trials if rows), key=lambda rows: rows[0]["timestamp"])
    return [(rows[0]["config"]["lr"], max(r["epoch"] for r in rows)) for rows in trials]


def test_a_study_killed_mid_search_stops_on_resume_the_trials_an_uninterrupted_one_stops(setup, study_pairs,
                                                                                       tmp_path):
    _, _, cache = setup
    space = tmp_path / "space.yaml"
    space.write_text(ASHA_SPACE, encoding="utf-8")
    results = tmp_path / "results"

    def argv(name: str) -> list[str]:
        return ["--regime", "scratch", "--data", str(study_pairs), "--results", str(results), "--name", name,
                "--cache-dir", str(cache), "--search-space", str(space), "--num-samples", "5", "--max-epochs", "2",
                "--max-concurrent", "1", "--seed", "0", "--no-analysis", *STUDY_FLAGS]

    assert study_run.main(argv("whole")) == 0
    uninterrupted = _epochs_by_lr(results / "whole")
    assert [lr for lr, _ in uninterrupted] == [3e-3, 1e-5, 1e-6, 1e-7, 1e-8]
    # the test means something only if ASHA stops trials that start after the interruption below
    assert [epochs for _, epochs in uninterrupted[2:]] == [1, 1, 1], uninterrupted

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:  # a file, not a pipe: a driver blocked on a full pipe would never finish a trial
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *argv("cut")], cwd=ROOT, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, text=True)
    db, deadline = results / "cut" / "optuna.db", time.time() + 600
    while optuna_trials_in(db, ("COMPLETE", "PRUNED")) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the study ended before it could be interrupted:\n" + log.read_text()[-3000:]
    proc.send_signal(signal.SIGINT)  # the first two trials have ended and reached rung 1; the third is running
    assert proc.wait(timeout=600) == 130, log.read_text()[-3000:]
    resumed_at = time.time()
    assert study_run.main(["--resume", "cut", "--results", str(results), "--no-analysis"]) == 0
    assert _epochs_by_lr(results / "cut") == uninterrupted
    # the resumed run's time budget counts the epochs it ran, not those of the two trials ended before it
    timings = json.loads((results / "cut" / "study.json").read_text())["timings"]
    rows = [json.loads(line) for p in (results / "cut" / "scratch").glob("trial_*/result.json")
            for line in p.read_text().splitlines()]
    before = sum(r["time_this_iter_s"] for r in rows if r["timestamp"] < int(resumed_at))
    after = sum(r["time_this_iter_s"] for r in rows if r["timestamp"] >= int(resumed_at))
    assert before > 0 and timings["trial_seconds"] == pytest.approx(after), timings
    assert 0 < timings["slot_busy_share"] <= 1, timings


def test_more_trials_on_a_finished_study_with_upstream_extends_the_trained_regime(setup, study_pairs, tmp_path):
    """Issue 44: `--resume NAME --more-trials 1` on a finished study that includes `upstream` stopped with "this Ray's
    restored Tuner has no _local_tuner._tune_config.scheduler ... install a tested Ray" on the tested Ray: the resume
    refilled ASHA's rungs of every restored search, and `upstream`'s has no scheduler. Now it extends `scratch` by one
    trial, leaves `upstream` as it was, and Optuna's record holds every trial finished."""
    import optuna

    _, space, cache = setup
    results = tmp_path / "results"
    argv = study_argv(study_pairs, results, "up", space, 2, 1, cache)
    argv[argv.index("--regime") + 1] = "upstream,scratch"
    assert study_run.main(argv + ["--pretrain-steps", "20"]) == 0
    upstream_before = (results / "up" / "upstream" / "best.json").read_text()
    storage = f"sqlite:///{results / 'up' / 'optuna.db'}"
    upstream_trials = len(optuna.load_study(study_name="upstream", storage=storage).trials)
    assert study_run.main(["--resume", "up", "--results", str(results), "--more-trials", "1", "--no-analysis",
                           "--max-concurrent", "1"]) == 0
    assert len(list((results / "up" / "scratch" / "more-1").glob("trial_*/result.json"))) == 1
    assert (results / "up" / "upstream" / "best.json").read_text() == upstream_before
    trials = {name: optuna.load_study(study_name=name, storage=storage).trials for name in ("scratch", "upstream")}
    assert len(trials["scratch"]) == 3 and len(trials["upstream"]) == upstream_trials
    assert all(t.state.is_finished() for ts in trials.values() for t in ts)


def test_a_restored_searcher_is_not_made_to_tell_optuna_a_trial_it_told_before_the_crash(tmp_path):
    """Issue 44: Tune restores the searcher from its last snapshot; a trial ASHA stopped after that snapshot was
    already told to Optuna as PRUNED in optuna.db, and the restored searcher, which does not know it, told it again
    when the trial ended once more: optuna raised "Cannot tell a PRUNED trial". optuna.db's record stands."""
    import optuna

    from study.tuning.searcher import (
        METRIC,
        MODE,
        AshaAwareOptunaSearch,
        make_sampler,
        optuna_storage,
        sampler_settings,
    )
    from study.tuning.space import parse_search_space

    space = parse_search_space({"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}}}, "t")

    def searcher() -> AshaAwareOptunaSearch:
        made = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=3, study_name="scratch",
                                     storage=optuna_storage(tmp_path), at_once=1, planned=1,
                                     sampler=make_sampler(sampler_settings("tpe", "scratch", 1, 0)))
        made.set_search_properties(None, None, space.tune_space())
        return made

    stopped = {"val_bleu": 1.0, "training_iteration": 1, "epoch": 1, "diverged": False}  # stopped at epoch 1 of 3
    live = searcher()
    live.suggest("a")
    live.on_trial_result("a", stopped)
    live.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot, then ASHA stops the trial, then the driver dies
    live.on_trial_complete("a", stopped)
    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("a", stopped)  # the trial ends again in the resumed run
    [trial] = optuna.load_study(study_name="scratch", storage=optuna_storage(tmp_path)).trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: 1.0}
