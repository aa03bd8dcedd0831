"""Each regime's path through a study — its search, its best configuration's seed re-runs, the test scoring, the
export, the pruning — with the regimes' paths run side by side.

Why side by side: run one after another, every regime left trial slots idle while work was queued — the last
trials of a search ran alone, and so did a regime's seed re-runs and its test scoring (issue 31: the slots were
busy 64–70 % of the quick study). Each regime's path is now a driver thread with its own Tune experiment, Optuna
study and ASHA, exactly as before; Ray hands the cluster's slots to whichever regime's trial is ready. What one
regime writes (best.json, its experiment, its checkpoints) is what it wrote when run alone.

Ctrl-C: Tune stops a search on SIGINT only in the main thread, so the driver's main thread waits, and on Ctrl-C
sets one event that every regime's search (`internals.tune_runs_side_by_side`) and every wrap-up step watches. Each
regime stops where it is with its state saved, as it did when run alone, and `--resume` goes on.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from study.common import read_json_file, write_json
from study.config import Budget, Config
from study.model.regimes import REGIMES

if TYPE_CHECKING:  # not imported at run time: `python -m study.run --help` stays quick
    from study.data.prepared import PreparedData
    from study.outputs.storage import StudyLocation


class Timings:
    """Where a study's minutes went (study.json's `timings`, the report's table): the data, each regime's search,
    seed runs, test scoring, export and pruning, the analysis, and how busy the trial slots were — the trials'
    own seconds over slots x the time from the first search's start to the last test scoring's end. A resumed
    study records the run that finished it. Regimes run side by side, so their phases overlap in time."""

    def __init__(self) -> None:
        self.start = time.time()
        self.phases: dict[str, float] = {}
        self.regimes: dict[str, dict[str, float]] = {}
        self._open: dict[str, tuple[str, float]] = {}  # regime -> (its phase now, since when)
        self._lock = threading.Lock()
        self.first_search: float | None = None
        self.last_scoring: float | None = None
        self.trial_seconds = 0.0
        self.scoring_seconds = 0.0  # the test scoring tasks' own seconds
        # Ray's fixed cost: the worker processes the trials ran in (Tune starts its own per experiment, ~8-10 s of
        # imports each on a 2-core machine before a trial's first epoch; a process runs the experiment's next
        # trials), as (node, pid) of the epochs reported in this run
        self.trial_processes: set[tuple[str, int]] = set()
        self.upstream_end: float | None = None  # when the upstream's pretraining beside the searches ended

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.time()
        try:
            yield
        finally:
            self.phases[f"{name}_s"] = self.phases.get(f"{name}_s", 0.0) + time.time() - started

    def regime_phase(self, regime: str, name: str | None) -> None:
        """End the regime's open phase and start `name` (None: the regime is done)."""
        now = time.time()
        with self._lock:
            if regime in self._open:
                done_name, began = self._open.pop(regime)
                self.regimes.setdefault(regime, {})[f"{done_name}_s"] = now - began
            if name:
                self._open[regime] = (name, now)
            if name == "search" and self.first_search is None:
                self.first_search = now

    def trials_ended(self, *grids, scoring_seconds: float = 0.0) -> None:
        """The trials' own seconds (Tune's time_this_iter_s: training and validation), once a regime is scored:
        the epochs reported in this run only, so that a resumed study does not count what ran before it; and
        the seconds its test scoring tasks ran."""
        seconds = 0.0
        processes: set[tuple[str, int]] = set()
        for grid in grids:
            for result in grid or []:
                history = result.metrics_dataframe
                if history is None or history.empty or "time_this_iter_s" not in history:
                    continue
                ran_here = history[history["timestamp"] >= int(self.start)]  # Tune's timestamp: whole seconds
                seconds += float(ran_here["time_this_iter_s"].sum())
                if "pid" in ran_here:
                    nodes = ran_here["node_ip"] if "node_ip" in ran_here else [""] * len(ran_here)
                    processes |= {(str(node), int(pid)) for node, pid in zip(nodes, ran_here["pid"])}
        with self._lock:
            self.last_scoring = time.time()
            self.trial_seconds += seconds
            self.scoring_seconds += scoring_seconds
            self.trial_processes |= processes

    def record(self, path: Path, slots: int, regimes_at_once: int = 1) -> None:
        span = (self.last_scoring - self.first_search) if self.first_search and self.last_scoring else None
        # Work on the slots beyond the trials: the test scoring tasks, and the upstream's pretraining (on a slot's
        # CPUs, held for it) for as long as it overlapped the searches.
        pretraining = max(0.0, min(self.upstream_end or 0.0, self.last_scoring or 0.0) - (self.first_search or 0.0))
        other = self.scoring_seconds + pretraining
        timings = {"wall_s": time.time() - self.start, **self.phases, "regimes": self.regimes,
                   "regimes_at_once": regimes_at_once, "trial_seconds": self.trial_seconds,
                   "scoring_seconds": self.scoring_seconds, "trial_processes": len(self.trial_processes),
                   "slots": slots,
                   "slot_busy_share": self.trial_seconds / (slots * span) if span else None,
                   "slot_work_share": (self.trial_seconds + other) / (slots * span) if span else None}
        record = read_json_file(path)
        write_json(path, {**record, "timings": timings})


class Interrupted(Exception):
    """A regime's path stopped with its state saved (Ctrl-C, or another regime's failure): `--resume` goes on."""


@dataclass
class StudyRun:
    """What every regime's path shares: the study's settings, where it is stored, its data and its clock."""

    config: Config
    budget: Budget
    spaces: dict
    where: StudyLocation
    data: PreparedData
    searched: list[str]
    name: str
    resume: bool
    extensions: list = field(default_factory=list)  # --more-trials: the extensions each search runs
    # the step that gives the data with the tiny upstream (pretrained or from the cache), run beside the searches
    # that need none (`training.pretraining.prepare_data_upstream_later`); None: no regime waits for one
    add_upstream: Callable[[], PreparedData] | None = None
    upstream_cpus: float = 0.0  # CPUs of the local Ray node held while the driver pretrains (0: none)
    mlflow: str | None = None
    clock: Timings = field(default_factory=Timings)
    stop: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: every regime stops and saves
    files: threading.Lock = field(default_factory=threading.Lock)  # study.json and the copy to a URI: one at a time

    upstream: Future | None = None  # the data with the upstream, once `add_upstream` has run

    def data_for(self, regime: str) -> PreparedData:
        """The data a regime's trials get: for a regime that starts from the upstream, with it (waiting for its
        pretraining); for any other, without it, at once."""
        if self.upstream is None or not REGIMES[regime].pretrained:
            return self.data
        while True:  # in short waits: a Ctrl-C meanwhile stops the regime
            if self.stop.is_set():
                raise KeyboardInterrupt
            with contextlib.suppress(TimeoutError):
                return self.upstream.result(timeout=0.5)

    def step(self, regime: str, name: str | None) -> None:
        """The regime's next phase begins, unless the study is stopping."""
        if self.stop.is_set() and name is not None:
            raise KeyboardInterrupt
        self.clock.regime_phase(regime, name)

    def push(self) -> None:
        with self.files:
            self.where.push()


def run_regimes(run: StudyRun, regimes: list[str], at_once: int) -> dict[str, dict]:
    """Every regime's path, up to `at_once` side by side; returns each regime's best.json row.

    Raises Interrupted (every regime's state saved) after Ctrl-C or when a regime stopped unfinished, and a
    regime's error after every other regime has stopped and saved."""
    from study.tuning.internals import tune_runs_side_by_side

    rows: dict[str, dict] = {}
    stopped: dict[str, str] = {}  # regime -> why it stopped unfinished
    errors: list[BaseException] = []
    gate = threading.BoundedSemaphore(max(1, at_once))

    def path(regime: str) -> None:
        try:
            with gate:
                rows[regime] = regime_path(run, regime)
        except Interrupted as why:
            stopped[regime] = str(why)
            run.stop.set()
        except KeyboardInterrupt:  # between steps (a Tune search saves and returns on its own)
            stopped[regime] = f"{regime} stopped in its wrap-up"
            run.stop.set()
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread once all have stopped
            errors.append(err)
            run.stop.set()

    run.upstream = _start_upstream(run)
    # Ctrl-C (SIGINT) sets the stop event; a second one quits without waiting. Installed explicitly, as Tune did
    # for itself: a driver started with SIGINT ignored (a background job of a script) is still stopped by it.
    presses: list[int] = []

    def on_ctrl_c(signum, frame) -> None:
        presses.append(signum)
        if len(presses) > 1:
            raise KeyboardInterrupt
        run.stop.set()
        print("\nstopping: each regime saves its state (Ctrl-C again to quit without waiting)", flush=True)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if main else None
    # Daemon threads: a second Ctrl-C, while the regimes save, leaves at once instead of waiting for them.
    threads = [threading.Thread(target=path, args=(r,), name=f"study-{r}", daemon=True) for r in regimes]
    try:
        with tune_runs_side_by_side(run.stop):
            for thread in threads:
                thread.start()
            _wait(threads)
    finally:
        if main and previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)
    if errors:
        raise errors[0]
    if stopped or presses:
        raise Interrupted("; ".join(stopped.values()) or "Ctrl-C")
    return {r: rows[r] for r in regimes}


def _start_upstream(run: StudyRun) -> Future | None:
    """Pretrain the tiny upstream (or read it from the cache) in a thread of its own, holding a trial slot's CPUs
    so that the regimes needing no upstream search on the other slots meanwhile; returns the data-with-upstream's
    future (None when no regime needs one)."""
    if run.add_upstream is None:
        return None
    from study.tuning.runner import hold_cpus

    future: Future = Future()
    release = hold_cpus(run.upstream_cpus)  # here, before any regime's thread starts a trial

    def pretrain() -> None:
        try:
            with run.clock.phase("upstream"):
                future.set_result(run.add_upstream())
            run.clock.upstream_end = time.time()
        except BaseException as err:  # noqa: BLE001 - raised again in each regime that waits for it
            future.set_exception(err)
        finally:
            release()

    threading.Thread(target=pretrain, name="study-upstream", daemon=True).start()
    return future


def _wait(threads: list[threading.Thread]) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # short joins: the main thread stays free to take Ctrl-C


def regime_path(run: StudyRun, regime: str) -> dict:
    """One regime from its search to its pruning; returns its best.json. Every step can be resumed."""
    from study.outputs.export import export_or_warn
    from study.outputs.holdout import score_best
    from study.outputs.record import count_test_scoring
    from study.outputs.tracking import log_best_or_warn, trial_callbacks
    from study.tuning.best import best_trial
    from study.tuning.extend import extend_regime
    from study.tuning.retention import prune_regime, saved_results
    from study.tuning.runner import check_optuna_agrees, run_regime, unfinished_trials
    from study.tuning.seeds import extra_seeds, run_seed_trials

    study_dir, where, budget = run.where.local, run.where, run.budget
    data = run.data_for(regime)  # a pretrained regime waits here for the upstream
    best_file = study_dir / regime / "best.json"
    if best_file.exists() and not run.extensions:
        print(f"[{regime}] already finished: {best_file}", flush=True)
        # Interrupted after scoring but before the export: export now, from the checkpoint best.json names
        # (pruning comes after the export, so it is still there).
        if not (study_dir / regime / "model" / "config.json").is_file():
            export_or_warn(study_dir, regime, data, where.tune_storage)
        if not budget.keep_checkpoints:  # interrupted before its pruning ended: prune (again is harmless)
            grid, seed_grid = saved_results(where.tune_storage, regime)
            prune_regime(grid, regime, study_dir, seed_grid)
        run.push()
        return read_json_file(best_file)
    run.step(regime, "search")
    grid, expected = run_regime(regime, run.config, budget, run.spaces[regime], study_dir, where.tune_storage, data,
                                run.resume, callbacks=trial_callbacks(run.mlflow, run.name, regime))
    standing = False  # --more-trials left the regime's best trial, and so its test score, as they were
    if run.extensions:
        grid, expected, standing = extend_regime(regime, run.config, budget, run.spaces[regime], study_dir,
                                                 where.tune_storage, data, grid, expected, run.extensions,
                                                 trial_callbacks(run.mlflow, run.name, regime))
    left = unfinished_trials(grid, expected)
    if left:
        run.push()
        raise Interrupted(f"{left} trial(s) of {regime} unfinished")
    check_optuna_agrees(study_dir, regime, grid)
    if standing:
        run.step(regime, None)  # its search time is recorded; nothing else runs for it
        run.push()
        return read_json_file(best_file)
    base = run.config.replace(regime=regime, **run.spaces[regime].fixed)
    seed_grid = None
    run.step(regime, "seed_runs")
    search_wall_s = run.clock.regimes[regime]["search_s"]  # the search and its extensions, as timed above
    if budget.seeds > 1 and REGIMES[regime].trains:  # an untrained regime gives the same scores every seed
        seeds = extra_seeds(run.config.seed, budget.seeds)
        best = best_trial(grid, regime, study_dir)  # its seed re-runs stop at its selected epoch
        seed_grid = run_seed_trials(regime, base, budget, best.params, seeds, where.tune_storage, data,
                                    run.resume, epochs=best.best_epoch)
        if unfinished_trials(seed_grid, len(seeds)):
            run.push()
            raise Interrupted(f"{regime} stopped during its seed runs")
    run.step(regime, "test_scoring")
    # counted before the scoring, so that an interruption between the two never leaves a look at the test split
    # uncounted (one interrupted while scoring counts twice once resumed: it may have looked twice)
    with run.files:
        count_test_scoring(study_dir, regime)  # study.json's test_scored
    row = score_best(grid, regime, base, data, study_dir, search_wall_s, run.searched, seed_grid=seed_grid,
                        resources={"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial})
    run.clock.trials_ended(grid, seed_grid, scoring_seconds=row["test_scoring_task_s"])
    run.step(regime, "export")
    export_or_warn(study_dir, regime, data, where.tune_storage)  # <regime>/model/: a Hugging Face folder
    log_best_or_warn(run.mlflow, study_dir, regime, run.name)  # --mlflow: test scores and the model folder
    run.step(regime, "pruning")
    if not budget.keep_checkpoints:  # scored: the best trial's best checkpoint alone stays, model only
        prune_regime(grid, regime, study_dir, seed_grid)
    run.step(regime, None)
    run.push()
    return row
