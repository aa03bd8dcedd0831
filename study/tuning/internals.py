"""Every dependence of the study on Ray Tune's or Optuna's *private* behaviour, in one module.

- `OptunaSearch` keeps its Optuna trials in `_ot_trials`, its finished ones in `_completed_trials` and
  its study in `_ot_study`: the ASHA-aware searcher (`study.tuning.searcher`) needs them to tell Optuna
  that a stopped trial was PRUNED (Ray has no public hook for it).
- `ASHAScheduler` keeps its rungs in `_brackets`, each with a `cutoff(recorded)`: `asha.min_results` wraps it
  (`require_rung_results`), and so does the study's ASHA in trial order (`judge_rungs_by_earlier_trials`).
- Ray saves no scheduler with an experiment: `Tuner.restore` gives back the ASHA pickled when the search
  started, rungs empty. `restore_asha_rungs` refills them (`_brackets`, `_trial_info`, from the results Tune saved
  that the resumed run will not report again: each trial's status and latest checkpoint in the experiment's
  `ExperimentAnalysis.trials`), through the restored Tuner's `_local_tuner._tune_config.scheduler`.
- Regimes searched side by side are Tune runs in driver threads. Tune stops a run on Ctrl-C through an event
  made per run by `ray.tune.tune._setup_signal_catching` and set by a SIGINT handler installed only in the main
  thread, and its registry of trainables (`ray.tune.registry._global_registry`) is not thread-safe:
  `tune_runs_side_by_side(event)` hands every run the study's one event (set on the driver's Ctrl-C) and lets
  one thread at a time into the registry. Tune stages a run's files on the driver in a folder named by its
  experiment and the second it started (`StorageContext._timestamp`, from `ray.tune.utils.date_str`): inside, that
  stamp is numbered per run, so that two regimes' `seeds` experiments never share one.
- Optuna's API holds a finished trial final and a running one never waiting again; a resumed search needs both
  (`reopen_failed`: an errored trial Tune continues; `requeue_lost_trials`: a trial asked for after Tune's last
  snapshot), written through its RDB storage's models (`_set_state`, refreshing `_CachedStorage`'s copy).
- Tune's `experiment_state-*.json` (a trial's status and failure count) has no public reader outside a
  running Tune: the analysis reads it here, as JSON, without importing Ray.

`check_ray_internals()` fails loudly, naming the versions tested, when a new Ray changes any of this;
every searcher calls it as it is made, and `tune_runs_side_by_side` checks its own hooks, so a study (and CI) says so
before a study would misbehave. No module-level Ray
import: the analysis imports `read_experiment_state` offline.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from pathlib import Path

from study.config import StudyError

TESTED = "ray 2.60 and optuna 5.1"
SEARCHER_ATTRIBUTES = ("_ot_trials", "_completed_trials", "_ot_study")


def check_ray_internals(searcher=None) -> None:
    """Raise StudyError if `searcher` (default: a fresh OptunaSearch) lacks the private state relied on."""
    if searcher is None:
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(metric="val_bleu", mode="max")
    missing = [name for name in SEARCHER_ATTRIBUTES if not hasattr(searcher, name)]
    if missing:
        raise StudyError(f"this Ray's OptunaSearch has no {', '.join(missing)}: the study's ASHA-aware searcher "
                         f"was written against {TESTED}; install a tested Ray (see pyproject.toml)")


def optuna_trial(searcher, trial_id: str):
    """The Optuna trial behind a Tune trial, or None."""
    return searcher._ot_trials.get(trial_id)


def is_completed(searcher, trial_id: str) -> bool:
    """Whether the trial has been told to Optuna: by this searcher, or, for a searcher restored from a snapshot
    older than optuna.db (a resumed search), before the snapshot's state was lost. Optuna refuses to be told a
    finished trial again ("Cannot tell a PRUNED trial"), and what optuna.db holds is what was told: it stands."""
    if trial_id in searcher._completed_trials:
        return True
    ot_trial = searcher._ot_trials.get(trial_id)
    if ot_trial is not None and ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished():
        searcher._completed_trials.add(trial_id)
        return True
    return False


# The system attribute marking the Optuna trials one searcher enqueued or asked for: its id, kept by Tune's pickles of
# the searcher (the Tuner's and each snapshot's), so that a restored searcher knows its trials from those of another
# experiment continuing the same Optuna study (`--more-trials`).
ASKED_BY = "tune_searcher"


def mark_asked(searcher, trial_id: str) -> None:
    """Mark the Optuna trial behind a Tune trial as this searcher's (one unpickled from an older study has no mark)."""
    if searcher._asked_by is None:
        return
    ot_trial = searcher._ot_trials[trial_id]
    ot_trial.storage.set_trial_system_attr(ot_trial._trial_id, ASKED_BY, searcher._asked_by)


def enqueue_once(searcher, points: list[dict]) -> None:
    """Enqueue the start points in the searcher's Optuna study, marked as its own, unless it has enqueued or asked
    before. Tune calls `set_search_properties`, and so OptunaSearch's `_setup_study`, again on the searcher of a
    restored Tuner (pickled before the search began): Ray's enqueued every start point once more, WAITING trials that
    the resumed search then ran in place of its sampler's proposals, or left in optuna.db for good."""
    study = searcher._ot_study
    if not points or any(t.system_attrs.get(ASKED_BY) == searcher._asked_by for t in study.get_trials(deepcopy=False)):
        return
    for point in points:
        study.enqueue_trial(point)
        queued = max(study.get_trials(deepcopy=False), key=lambda t: t.number)  # the one just enqueued
        study._storage.set_trial_system_attr(queued._trial_id, ASKED_BY, searcher._asked_by)


def _set_state(storage, trial_id: int, state) -> None:
    """Set an Optuna trial's state in its RDB storage, a change Optuna's API refuses (a finished trial is final, a
    running one never waits again), and drop the storage's cached copy of it."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in a _CachedStorage
    if not hasattr(backend, "scoped_session"):
        raise StudyError(f"this Optuna's storage {type(backend).__name__} has no scoped_session: resuming a search "
                         f"was written against {TESTED} with an RDB storage; install a tested Optuna")
    with _create_scoped_session(backend.scoped_session) as session:
        row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        row.state = state
        row.datetime_complete = None
    place = getattr(storage, "_trial_id_to_study_id_and_number", {}).get(trial_id)
    if place is not None:  # _CachedStorage keeps finished trials as they were: it must read this one again
        with storage._lock:
            study = storage._studies[place[0]]
            study.trials[place[1]] = backend.get_trial(trial_id)
            study.unfinished_trial_ids.add(trial_id)


def requeue_lost_trials(searcher) -> list[int]:
    """Put back in Optuna's queue (WAITING) the trials this searcher asked for that a restored Tune experiment does
    not know: asked after its last snapshot, before the driver died. Left RUNNING, they stayed so in optuna.db for
    good and TPE's constant liar counted each as a bad result beside every later proposal; WAITING, the restored
    searcher asks for them again first, as it would have (same number, same parameters). Returns their numbers."""
    from optuna.trial import TrialState

    study = searcher._ot_study
    known = {t._trial_id for t in searcher._ot_trials.values()}
    lost = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t._trial_id not in known and t.system_attrs.get(ASKED_BY) in (None, searcher._asked_by)]
    for trial in lost:  # unmarked: asked just before the driver died, or by a searcher older than the mark
        _set_state(study._storage, trial._trial_id, TrialState.WAITING)
    return [t.number for t in lost]


def reopen_failed(searcher, trial_id: str) -> bool:
    """Whether the trial was FAIL in Optuna and is RUNNING again: Tune continues an errored trial on `--resume`
    (`resume_errored`), and what it reports from then on must reach Optuna, which refuses any word on a finished
    trial. Its intermediate values stay; the searcher tells it again how it ends."""
    from optuna.trial import TrialState

    ot_trial = searcher._ot_trials.get(trial_id)
    if ot_trial is None or ot_trial.storage.get_trial(ot_trial._trial_id).state != TrialState.FAIL:
        return False
    _set_state(ot_trial.storage, ot_trial._trial_id, TrialState.RUNNING)
    searcher._completed_trials.discard(trial_id)
    return True


def tell_pruned(searcher, trial_id: str) -> None:
    """Tell Optuna the trial was PRUNED and mark it done, as OptunaSearch.on_trial_complete would mark it."""
    from optuna.trial import TrialState

    searcher._ot_study.tell(searcher._ot_trials[trial_id], None, state=TrialState.PRUNED)
    searcher._completed_trials.add(trial_id)


def intermediate_values(ot_trial) -> dict[int, float]:
    """An Optuna trial's intermediate values by step (from its storage, the source of truth)."""
    return dict(ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values)


def intermediate_steps(ot_trial) -> set[int]:
    """Steps at which an Optuna trial has intermediate values."""
    return set(intermediate_values(ot_trial))


class _PatientCutoff:
    """A rung's cutoff that is None (stop nothing) until `min_results` trials have recorded at the rung.

    Ray's ASHA compares a trial at a rung with the results already there: the first arrival always goes on
    and the second is judged against it alone. Wrapped around `_Bracket.cutoff` (private: no public hook)."""

    def __init__(self, cutoff, min_results: int) -> None:
        self.cutoff, self.min_results = cutoff, min_results

    def __call__(self, recorded: dict):
        return self.cutoff(recorded) if len(recorded) >= self.min_results else None


def _wrap_rung_cutoffs(scheduler, wrap, what: str) -> None:
    """Replace each of Ray's ASHA brackets' `cutoff` by `wrap(cutoff)`; `what` (which feature needs it, and the way
    out) goes into the error raised when this Ray's ASHA has no such cutoff."""
    brackets = getattr(scheduler, "_brackets", None)
    if not brackets or not all(hasattr(b, "cutoff") for b in brackets):
        raise StudyError(f"this Ray's ASHAScheduler has no _brackets with a cutoff: {what}")
    for bracket in brackets:
        bracket.cutoff = wrap(bracket.cutoff)


def require_rung_results(scheduler, min_results: int) -> None:
    """Make Ray's ASHA stop nothing at a rung before `min_results` trials have recorded there."""
    _wrap_rung_cutoffs(scheduler, lambda cutoff: _PatientCutoff(cutoff, min_results),
                       f"asha.min_results was written against {TESTED}; drop min_results from the search space or "
                       f"install a tested Ray")


class _EarlierTrialsCutoff:
    """A rung's cutoff computed from the trials numbered at least `scheduler.at_once` below the one being judged
    (`scheduler.judged`), whatever else has reached the rung by then (`study.tuning.searcher.TrialOrderASHA`).
    Wrapped around `_Bracket.cutoff`, as `_PatientCutoff` is, and outside it: `min_results` counts these trials."""

    def __init__(self, cutoff, scheduler) -> None:
        self.cutoff, self.scheduler = cutoff, scheduler

    def __call__(self, recorded: dict):
        judged = self.scheduler.judged
        if judged is None:  # not judging a trial of known number: Ray's own rule
            return self.cutoff(recorded)
        numbers, last = self.scheduler.numbers, judged - self.scheduler.at_once
        return self.cutoff({t: v for t, v in recorded.items() if numbers.get(t, judged) <= last})


def judge_rungs_by_earlier_trials(scheduler) -> None:
    """Make a TrialOrderASHA compare a trial at a rung with the earlier trials' results alone (see its docstring)."""
    _wrap_rung_cutoffs(scheduler, lambda cutoff: _EarlierTrialsCutoff(cutoff, scheduler),
                       f"the study's ASHA in trial order was written against {TESTED}; install a tested Ray (see "
                       f"pyproject.toml)")


def restore_asha_rungs(tuner) -> int:
    """Refill a restored search's ASHA with every result its trials reported before the interruption; returns
    how many results were replayed.

    Tune saves the searcher with the experiment but not the scheduler (ray.tune.execution.tune_controller's
    `save_to_dir`), so a restored ASHA starts with empty rungs: the first trial to reach a rung after `--resume`
    would pass it whatever its value, and the next be judged against that one alone. Each saved result that the
    resumed run will not report again (`_resumes_after`) goes through ASHA's own `on_trial_result`, as it did live,
    so the rungs hold what an uninterrupted search's would when each trial goes on."""
    from types import SimpleNamespace

    from ray.tune.schedulers import AsyncHyperBandScheduler

    from study.tuning.trials import trial_number_of

    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    if not hasattr(tune_config, "scheduler"):
        raise StudyError(f"this Ray's restored Tuner has no _local_tuner._tune_config.scheduler: resuming a "
                         f"search with ASHA was written against {TESTED}; install a tested Ray")
    if not isinstance(tune_config.scheduler, AsyncHyperBandScheduler):
        # no ASHA: a regime that trains nothing (its grid of decoding choices, scheduler None) or --scheduler none
        return 0
    scheduler = tune_config.scheduler
    if len(scheduler._brackets) != 1:  # which bracket a trial was in is not saved either
        raise StudyError(f"resuming an ASHA with {len(scheduler._brackets)} brackets is not supported (the study "
                         f"builds one); start the search again without --resume")
    bracket = scheduler._brackets[0]
    replayed = 0
    grid = tuner.get_results()  # what the experiment saved, without running anything
    for saved in grid._experiment_analysis.trials:
        history = grid._experiment_analysis.trial_dataframes.get(saved.trial_id)
        if history is None or history.empty or scheduler._time_attr not in history:
            continue
        trial = SimpleNamespace(trial_id=saved.trial_id)
        scheduler._trial_info[trial.trial_id] = bracket  # what on_trial_add does, with one bracket to pick
        if isinstance(getattr(scheduler, "numbers", None), dict):  # a TrialOrderASHA's trial numbers
            number = trial_number_of(Path(saved.path).name)
            if number is not None:
                scheduler.numbers[trial.trial_id] = number
        history = history.drop_duplicates(scheduler._time_attr, keep="last")  # a trial run again appends its rows
        for row in history[history[scheduler._time_attr] <= _resumes_after(saved, scheduler._time_attr)] \
                .sort_values(scheduler._time_attr).to_dict("records"):
            scheduler.on_trial_result(None, trial, row)
            replayed += 1
    return replayed


def _resumes_after(trial, time_attr: str) -> float:
    """The last result of a saved trial that its resumed run will not report again: a finished trial reports
    nothing more; any other (running, pending, errored) runs again from its latest checkpoint, as far as the
    experiment's last snapshot knew it (none: from the start). Its result files may hold more, written after that
    snapshot, before the driver died: replayed into the rungs, those results would make ASHA let the trial pass the
    rung unjudged when it reaches it again (a trial already recorded at a rung is not judged there)."""
    import math

    if trial.status == "TERMINATED":
        return math.inf
    latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    return float(latest.metrics.get(time_attr, 0)) if latest is not None else 0.0


_RUNS = itertools.count()  # the Tune runs this driver has made, numbering their staging folders


@contextlib.contextmanager
def tune_runs_side_by_side(stop: threading.Event):
    """While inside, Tune runs may run in several driver threads at once: every run stops, saving its state as on
    Ctrl-C, once `stop` is set, and Tune's process-wide registry of trainables takes one thread at a time.

    Why: Tune makes its stop event per run in `ray.tune.tune._setup_signal_catching`, set by a SIGINT handler it
    installs in the main thread only; and each run registers its trainable in `ray.tune.registry._global_registry`,
    whose `flush_values` iterates a dict another run's registration can change ("dictionary changed size during
    iteration", seen in the quick study's first side-by-side run).

    And every run stages its files (experiment state, searcher, the trials' result files) on the driver in a folder
    named by its experiment's name and the second it started (`ray.train._internal.storage.StorageContext._timestamp`,
    from `ray.tune.utils.date_str`), and uploads that whole folder to its experiment: two regimes' `seeds` (or
    `more-1`) experiments started in one second shared one, so each uploaded the other's trials and state, and a
    resumed `full/seeds` restored `scratch`'s seed run, whose checkpoint is not under `full/seeds` ("no checkpoint at
    .../full/seeds/trial_.../checkpoint_000000/state.pt"). Inside, that stamp gets a number of its own per run."""
    import ray.tune.registry as registry
    import ray.tune.tune as tune_run
    import ray.tune.utils as tune_utils

    original = getattr(tune_run, "_setup_signal_catching", None)
    shared = getattr(registry, "_global_registry", None)
    stamp = getattr(tune_utils, "date_str", None)
    if not callable(original) or not all(callable(getattr(shared, m, None)) for m in ("register", "flush_values")) \
            or not callable(stamp):
        raise StudyError(f"this Ray's Tune has no _setup_signal_catching, _global_registry.register/flush_values or "
                         f"utils.date_str: the study runs regimes side by side through them (written against "
                         f"{TESTED}); install a tested Ray (see pyproject.toml), or pass --regimes-at-once 1")
    lock = threading.RLock()  # reentrant: register() calls flush_values()

    def one_at_a_time(method):
        def locked(*args, **kwargs):
            with lock:
                return method(*args, **kwargs)
        return locked

    tune_run._setup_signal_catching = lambda: stop
    shared.register, shared.flush_values = one_at_a_time(shared.register), one_at_a_time(shared.flush_values)
    # read by StorageContext as each run's storage is made; the driver's pid, as studies may share a cluster
    tune_utils.date_str = lambda: f"{stamp()}_{os.getpid()}_{next(_RUNS)}"
    try:
        yield stop
    finally:
        tune_run._setup_signal_catching = original
        del shared.register, shared.flush_values  # the class's own methods again
        tune_utils.date_str = stamp


def read_experiment_state(experiment_dir: Path) -> dict[str, dict]:
    """Trial folder name -> {status, trial_id, config, num_failures} from Tune's newest state snapshot."""
    snapshots = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    try:
        state = json.loads(snapshots[-1].read_text(encoding="utf-8")) if snapshots else None
    except (OSError, ValueError):
        state = None
    out: dict[str, dict] = {}
    for entry in (state or {}).get("trial_data", []):
        try:
            trial, meta = json.loads(entry[0]), json.loads(entry[1])
        except (ValueError, TypeError, IndexError):
            continue
        out[trial.get("relative_logdir", "")] = {"status": trial.get("status"), "trial_id": trial.get("trial_id"),
                                                 "config": trial.get("config") or {},
                                                 "num_failures": meta.get("num_failures", 0)}
    return out
