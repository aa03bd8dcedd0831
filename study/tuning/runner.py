"""One regime's search on a Ray cluster: Ray started or joined, the budget fitted to the cluster, Tune run.

`run_regime` builds the Tuner of one regime — its trainable with the data through `tune.with_parameters`,
the Optuna searcher behind a concurrency limit, ASHA, checkpoints kept by validation BLEU, trial folders
named by the project — or restores an interrupted one, and returns Tune's ResultGrid.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from study.config import Budget, Config, StudyError
from study.data.prepared import PreparedData
from study.model.regimes import REGIMES
from study.tuning.internals import restore_asha_rungs
from study.tuning.searcher import (
    make_scheduler,
    make_searcher,
    optuna_storage,
    planned_trials,
    sampler_settings,
    scheduler_settings,
    search_width,
)
from study.tuning.space import SearchSpace
from study.tuning.trainables import with_data
from study.tuning.trials import trial_dirname


def _check_reachable(address: str) -> None:
    """Fail in seconds on a host:port nobody answers at: ray.init would retry for minutes."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and friends: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise StudyError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); "
                         f"start one with `ray start --head` or drop --address to run locally") from err


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or without one start a local Ray of this process's own.

    `ray.init()` with no address would join any cluster recorded in Ray's temp dir (someone's `ray start
    --head`), silently: the study then runs on a machine's shared cluster. `address="local"` never does;
    `--address auto` joins one explicitly."""
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():  # called again in one process (a notebook, the tests): keep that Ray
        return
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING, runtime_env=_worker_env())
        except Exception as err:  # noqa: BLE001 - connection errors come in many types
            raise StudyError(f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]} "
                             f"(is `ray start --head` running there?)") from err
    else:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=_worker_env(), _system_config=LOCAL_RAY_SETTINGS)


# A worker process costs ~6 s to start (importing torch and transformers). Ray kills an idle worker after 1 s
# once there are more workers than CPUs. A study alternates searches (trial actors) with test scoring (tasks),
# so each scoring started new workers that imported everything again. Idle workers are now kept for 10 minutes,
# so the next scoring finds them warm. The cost is memory: a few idle processes holding torch.
LOCAL_RAY_SETTINGS = {"idle_worker_killing_time_threshold_ms": 600_000}


def _worker_env() -> dict | None:
    """The trials' environment: how they show progress (`study.progress.for_workers`), if anything is set."""
    from study import progress

    env = progress.for_workers()
    return {"env_vars": env} if env else None


def hold_cpus(cpus: float) -> Callable[[], None]:
    """Hold `cpus` of the local Ray node while the driver itself computes (the tiny upstream's pretraining beside
    the searches that need no upstream), so that Tune runs one trial fewer beside it instead of three processes
    sharing two cores and every trial's times inflated; returns the call that gives them back. Nothing is held
    when `cpus` is 0 (a cluster's driver does not compute on the trials' CPUs)."""
    if cpus <= 0:
        return lambda: None
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": cpus}])
    ray.get(group.ready())  # before any trial is started: nothing else holds the CPUs yet
    return lambda: remove_placement_group(group)


def finish_budget(budget: Budget, address: str | None = None) -> Budget:
    """The budget with what the cluster decides filled in (GPUs per trial and concurrency, where the flags left
    them None): a new Budget, the one given unchanged."""
    import ray

    resources = ray.cluster_resources()
    gpus = budget.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if address and not gpus:
            # An autoscaling cluster starts with no GPU worker: without this flag trials would run on CPUs.
            print("warning: the cluster has no GPU yet, so trials get none; pass --gpus-per-trial 1 "
                  "(and --max-concurrent N) to make it scale up GPU workers", file=sys.stderr, flush=True)
    slots = budget.max_concurrent
    if not slots:
        by_cpu = int(resources.get("CPU", 1) // budget.cpus_per_trial)
        by_gpu = int(resources.get("GPU", 0) // gpus) if gpus else by_cpu
        slots = max(1, min(by_cpu, by_gpu))
    return dataclasses.replace(budget, gpus_per_trial=gpus, max_concurrent=slots)


def needs_greedy_bleu(regime: str, budget: Budget, space: SearchSpace) -> bool:
    """Whether the regime's search ranks ASHA's rungs by greedy validation BLEU, so that its beam trials must
    decode validation greedily too each epoch (a second generation pass that nothing else uses)."""
    return (REGIMES[regime].trains and budget.scheduler == "asha"
            and scheduler_settings(space, budget.max_epochs)["rung_metric"] == "val_bleu_greedy")


def regime_trainable(regime: str, base: Config, budget: Budget, data: PreparedData, space: SearchSpace):
    """The regime's Tune trainable for its search: its data, one trial's resources, and the greedy validation BLEU
    its ASHA needs, if any."""
    return with_data(regime, base, budget, data, greedy_bleu=needs_greedy_bleu(regime, budget, space))


def search_tuner(trainable, regime: str, budget: Budget, space: SearchSpace, study_dir: Path, storage_path: str,
                 name: str, n: int, sampler: dict, callbacks: list | None = None):
    """A new Tuner searching `n` trials of the regime with `sampler`, its Optuna study `<regime>` in optuna.db
    (continued if it exists: Ray's OptunaSearch loads it), as experiment `<storage_path>/<name>`."""
    from ray import tune

    from study.tuning.retention import CheckpointRetention, checkpoint_config

    trains = REGIMES[regime].trains
    max_epochs = budget.max_epochs if trains else 0
    # An untrained regime's trials are each one evaluation of the same model: one worker process runs them
    # in turn, instead of each starting its own (~8 s of imports here for a 1-2 s evaluation).
    at_once = search_width(space, n) if trains else 1
    # Searcher and ASHA both work in trial order for `at_once` (the search's width) trials at a time, so that the
    # search's proposals and stops depend neither on which trial reported first (regimes side by side share the
    # slots) nor on how many slots the cluster has: fewer slots than the width run its trials in turn, the same search.
    # No ConcurrencyLimiter of our own: `max_concurrent_trials` wraps the searcher in one (ray.tune.tune.run).
    running = min(at_once, budget.max_concurrent) if budget.max_concurrent else at_once
    searcher = make_searcher(study_dir, regime, max_epochs, sampler,
                             points_to_evaluate=(space.start_points() or None) if trains else space.grid_points(),
                             at_once=at_once, planned=n)
    return tune.Tuner(
        trainable,
        param_space=space.tune_space(trains),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=n, max_concurrent_trials=running,
            trial_dirname_creator=trial_dirname,
            # A finished trial's worker process runs the next trial: no new process importing torch and
            # transformers and fetching the data per trial. Safe because `fit` seeds every RNG and
            # restores torch's threads, so a trial's numbers never depend on what ran before it.
            reuse_actors=True,
            scheduler=make_scheduler(space, budget.max_epochs, budget.grace_period, budget.reduction_factor,
                                     at_once=at_once) if trains and budget.scheduler == "asha" else None,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path,
            # Disk bounded: what resumes a running trial, and the checkpoints of the best so far.
            checkpoint_config=checkpoint_config(keep_all=budget.keep_checkpoints),
            callbacks=[*(callbacks or []), *([] if budget.keep_checkpoints else [CheckpointRetention()])],
            failure_config=tune.FailureConfig(max_failures=budget.max_failures),
            verbose=1,
        ),
    )


def restore_search(experiment: str, trainable):
    """An interrupted search's Tuner, to be fit again: its unfinished trials continued from their latest checkpoints,
    its errored ones too (`resume_errored`: an error is often the machine's, not the configuration's), the searcher
    from Tune's last snapshot (`AshaAwareOptunaSearch.restore`), ASHA's rungs refilled (Ray restores no scheduler)."""
    from ray import tune

    tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    restore_asha_rungs(tuner)
    return tuner


def run_regime(regime: str, config: Config, budget: Budget, space: SearchSpace, study_dir: Path, tune_storage: str,
               data: PreparedData, resume: bool, callbacks: list | None = None):
    """Search one regime (or continue its search) and return (Tune's ResultGrid, trials in the budget).

    `study_dir` is the study's local folder (optuna.db lives there); `tune_storage` is where Tune writes
    the experiment (the same folder, or the study's URI on a cluster). `callbacks`: more Tune callbacks for a
    new search (e.g. MLflow's logger); a restored one keeps those it was started with."""
    from ray import tune

    trainable = regime_trainable(regime, config.replace(regime=regime, **space.trial_base(REGIMES[regime].trains)),
                                 budget, data, space)
    experiment = f"{tune_storage}/{regime}"
    trains = REGIMES[regime].trains
    n = planned_trials(trains, budget.num_samples, space)
    if resume and tune.Tuner.can_restore(experiment):
        print(f"[{regime}] resuming {experiment}", flush=True)
        tuner = restore_search(experiment, trainable)
    else:
        sampler = sampler_settings(budget.searcher, regime, n, config.seed, budget.same_draws, trains)
        tuner = search_tuner(trainable, regime, budget, space, study_dir, tune_storage, regime, n, sampler, callbacks)
    return tuner.fit(), n


def unfinished_trials(grid, expected: int) -> int:
    """Trials of the regime's budget that neither finished nor failed (Ctrl-C leaves some pending or unstarted)."""
    return expected - grid.num_terminated - grid.num_errors


def check_optuna_agrees(study_dir: Path, regime: str, grid) -> None:
    """After a restore, Tune rebuilds the searcher from its own pickle: make sure it still wrote to optuna.db."""
    import optuna

    trials = optuna.load_study(study_name=regime, storage=optuna_storage(study_dir)).trials
    if len(trials) != len(grid):
        print(f"warning: optuna.db holds {len(trials)} trial(s) of {regime} but Tune ran {len(grid)}; "
              f"trust Tune's results in {study_dir / regime}", file=sys.stderr)
