"""A resume after the driver died between two of Tune's experiment snapshots keeps Optuna's record and ASHA's
decisions true (issue 44, item 4).

Tune saves an experiment (its trials, the searcher) in snapshots, at most every 10 s and after each checkpoint; a
driver killed in between loses what happened since the last one, while optuna.db and the trials' result files keep
it. Here the driver "dies" by an exception out of Tune's loop in place of a chosen snapshot (`_fit_until_the_driver_dies`),
after which the search is resumed as `--resume` resumes it (`runner.restore_search`). The trials are a toy, no model:
a trial's score is 1000 x lr x epoch, with a checkpoint each epoch; the searcher, ASHA in trial order and the
checkpoint policy are the study's own (`runner.search_tuner`).

Three trials of two epochs, one at a time, from fixed start points (lr 2e-3, 1e-3, 5e-3): ASHA stops the second after
its first epoch (below the first's), the third runs both.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from study.config import Budget
from study.tuning.space import parse_search_space

pytestmark = pytest.mark.slow  # Tune runs (toy trials, each in a Ray worker)
LRS = [2e-3, 1e-3, 5e-3]
EPOCHS = 2
UNINTERRUPTED = {1: 2, 2: 1, 3: 2}  # trial number -> epochs run


def toy(config: dict, fail_once: str | None = None) -> None:
    """Score 1000 x lr x epoch, a checkpoint each epoch, resumed from one; with `fail_once` (a file that exists), the
    trial at lr 5e-3 raises once, in its second epoch, deleting the file."""
    from ray import tune

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = json.loads((Path(directory) / "state.json").read_text())["epoch"]
    for epoch in range(start + 1, EPOCHS + 1):
        if fail_once and epoch == 2 and config["lr"] == LRS[2] and Path(fail_once).exists():
            Path(fail_once).unlink()
            raise RuntimeError("injected failure")
        score = 1000 * config["lr"] * epoch
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"val_bleu": score, "val_bleu_greedy": score, "epoch": epoch, "diverged": False},
                        checkpoint=tune.Checkpoint.from_directory(directory))


class DriverDied(Exception):
    pass


def _fit_until_the_driver_dies(tuner, when, keep_before=None) -> None:
    """Fit `tuner`, Tune's loop raising DriverDied in place of the first experiment snapshot at which `when(trials)`
    holds (the snapshot before it is what a resume finds); `keep_before(trials)`: a snapshot is taken at once when it
    first holds (as Tune's periodic one may happen to be)."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    original = _ExperimentCheckpointManager.sync_up_experiment_state
    kept, died = [], []

    def sync_up(self, save_fn, force=False, wait=False):
        trials = save_fn.__self__.get_trials()
        if when(trials):
            died.append(True)
            raise DriverDied
        if keep_before is not None and not kept and keep_before(trials):
            kept.append(True)
            force = True
        return original(self, save_fn, force=force, wait=wait)

    _ExperimentCheckpointManager.sync_up_experiment_state = sync_up
    try:
        tuner.fit()
    except Exception:  # noqa: BLE001 - Tune wraps what ended its loop
        pass
    finally:
        _ExperimentCheckpointManager.sync_up_experiment_state = original
    assert died, "the driver was to die, but the search ended first"


def _number(trial) -> int | None:
    from study.tuning.trials import trial_number

    return trial_number(trial)


def _search(tmp_path: Path, fail_once: Path | None = None):
    """A new search (Tuner) of the toy over LRS, and its experiment's path."""
    import sys

    from ray import cloudpickle, tune

    from study.tuning.runner import search_tuner, start_ray
    from study.tuning.searcher import sampler_settings

    start_ray(None)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the toy travels to workers that cannot import tests/
    space = parse_search_space({"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}},
                                "asha": {"grace_period": 1, "reduction_factor": 2},
                                "start": [{"lr": lr} for lr in LRS]}, "toy")
    budget = Budget(num_samples=len(LRS), max_epochs=EPOCHS, max_concurrent=1, cpus_per_trial=1, gpus_per_trial=0,
                    grace_period=None, reduction_factor=None, max_failures=0)
    trainable = tune.with_parameters(toy, fail_once=str(fail_once) if fail_once else None)
    sampler = sampler_settings("tpe", "scratch", len(LRS), 0)
    tuner = search_tuner(trainable, "scratch", budget, space, tmp_path, str(tmp_path), "scratch", len(LRS), sampler)
    return tuner, trainable, f"{tmp_path}/scratch"


def _resume(experiment: str, trainable):
    from study.tuning.runner import restore_search

    return restore_search(experiment, trainable).fit()


def _optuna(tmp_path: Path) -> list:
    import optuna

    from study.tuning.searcher import optuna_storage

    return optuna.load_study(study_name="scratch", storage=optuna_storage(tmp_path)).trials


def _epochs_run(grid) -> dict[int, int]:
    return {int(Path(r.path).name.split("_")[1]): int(r.metrics["epoch"]) for r in grid}


def test_a_trial_asked_for_after_the_last_snapshot_is_not_left_running_in_optuna(tmp_path):
    """The second trial is asked for (a RUNNING trial in optuna.db) and the driver dies before any snapshot holds
    it: the resumed search knows nothing of it and asks again. That lost trial stayed RUNNING in optuna.db for good,
    and TPE's constant liar counted it as a bad result running beside every later proposal."""
    tuner, trainable, experiment = _search(tmp_path)
    _fit_until_the_driver_dies(tuner, lambda trials: len(trials) >= 2)
    assert [t.state.name for t in _optuna(tmp_path)] == ["COMPLETE", "RUNNING", "WAITING"]  # the third start point
    grid = _resume(experiment, trainable)
    assert _epochs_run(grid) == UNINTERRUPTED
    trials = _optuna(tmp_path)  # the lost trial asked for again, as it was: the record is the search's, in order
    assert [(t.params["lr"], t.state.name) for t in trials] == [(LRS[0], "COMPLETE"), (LRS[1], "PRUNED"),
                                                                (LRS[2], "COMPLETE")]


def test_an_errored_trial_continued_on_resume_reaches_optuna(tmp_path):
    """The third trial raises in its second epoch (no retries): Tune ends it ERROR and Optuna FAIL. `--resume`
    continues it from its first epoch's checkpoint (`resume_errored`) and it finishes; Optuna kept FAIL and never
    heard of its second epoch. Now each trial's state and value in optuna.db are Tune's."""
    from study.tuning.searcher import METRIC

    marker = tmp_path / "fail-once"
    marker.write_text("")
    tuner, trainable, experiment = _search(tmp_path, fail_once=marker)
    first = tuner.fit()
    assert first.num_errors == 1 and not marker.exists()
    assert [t.state.name for t in _optuna(tmp_path)] == ["COMPLETE", "PRUNED", "FAIL"]
    grid = _resume(experiment, trainable)
    assert grid.num_errors == 0 and _epochs_run(grid) == UNINTERRUPTED
    by_lr = {t.params["lr"]: t for t in _optuna(tmp_path)}
    for result in grid:
        trial = by_lr[result.config["lr"]]
        scores = result.metrics_dataframe.drop_duplicates("training_iteration")
        assert trial.intermediate_values == dict(zip(scores["training_iteration"], scores[METRIC])), trial.number
        assert trial.state.name == ("COMPLETE" if result.metrics["epoch"] == EPOCHS else "PRUNED"), trial.number
        assert trial.value == pytest.approx(scores[METRIC].max()), trial.number


def test_a_rung_decision_due_after_the_last_snapshot_is_taken_on_resume(tmp_path):
    """The second trial reaches its first rung (where ASHA stops it) and the driver dies before the snapshot that
    would have held that result; the last snapshot holds the trial running, with no checkpoint. The resumed search
    runs it again from its start, and its rung decision must be taken again: the rungs refilled from the trials'
    result files held its first epoch already, so ASHA let it pass unjudged and it ran both epochs."""
    tuner, trainable, experiment = _search(tmp_path)

    def second(trials):
        return [t for t in trials if _number(t) == 2]

    _fit_until_the_driver_dies(tuner, lambda trials: any(t.last_result.get("training_iteration") for t in second(trials)),
                               keep_before=second)
    grid = _resume(experiment, trainable)
    assert _epochs_run(grid) == UNINTERRUPTED
    assert not [t for t in _optuna(tmp_path) if t.state.name == "RUNNING"]


def test_a_searcher_pickled_by_a_study_begun_before_the_marks_still_resumes(tmp_path):
    """Tune unpickles a searcher without calling its __init__: one saved by a study begun before the searcher marked
    its trials and kept the trials-at-once limit has neither attribute, and must still set up, ask and restore."""
    from study.tuning.searcher import (
        METRIC,
        MODE,
        AshaAwareOptunaSearch,
        make_sampler,
        optuna_storage,
        sampler_settings,
    )

    space = parse_search_space({"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}},
                                "start": [{"lr": 1e-3}]}, "t")
    old = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=2, study_name="scratch", at_once=1, planned=2,
                                storage=optuna_storage(tmp_path), points_to_evaluate=space.start_points(),
                                sampler=make_sampler(sampler_settings("tpe", "scratch", 2, 0)))
    del old.__dict__["_asked_by"]
    old.set_search_properties(None, None, space.tune_space())
    assert old.suggest("a") == {"lr": 1e-3}
    old.save(str(tmp_path / "searcher.pkl"))
    old.restore(str(tmp_path / "searcher.pkl"))
    assert [t.state.name for t in _optuna(tmp_path)] == ["RUNNING"]
