"""The study: one Ray Tune + Optuna + ASHA search per regime, then each regime's best trial on the test split.

    python -m study.run --regime all                 # quick preset: bundled corpus, tiny model, ~10 min on 2 cores
    python -m study.run --preset paper --data fra.txt --gpus-per-trial 1
    python -m study.run --resume NAME                # continue an interrupted study

Results land in `results/<name>/`: study.json, optuna.db, one Tune experiment per regime, each regime's
best.json / test.hyp.txt / test.ref.txt, and summary.csv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from study.config import REGIME_NAMES, Config, StudyError, add_config_flags, config_from_flags
from study.results import evaluate_best, study_record, write_json, write_summary
from study.search import (
    default_search_space_path,
    load_search_space,
    make_scheduler,
    make_searcher,
    parse_search_space,
)
from study.storage import StudyLocation

log = logging.getLogger("study.run")

# Presets set the Config and the budget; any explicit flag overrides them.
PRESETS: dict[str, dict] = {
    "quick": {
        # Sized to finish pretraining + all four regimes in about 10 minutes on 2 CPU cores (see README).
        "config": dict(data="sample", model="tiny", max_train_pairs=3000, max_eval_pairs=200, max_test_pairs=1000,
                       epochs=3, eval_batch_size=100, pretrain_steps=800),
        "num_samples": 3, "max_concurrent": None, "needs_data": False,
    },
    "paper": {  # the original experiment's scale: t5-small, 10 epochs; meant for GPUs
        "config": dict(model="t5-small", epochs=10, max_eval_pairs=2000, eval_batch_size=128),
        "num_samples": 8, "max_concurrent": None, "needs_data": True,
    },
}


PER_TRIAL_FLAGS = ("lr", "batch_size", "num_beams", "epochs", "regime", "torch_threads")


@dataclass
class Budget:
    num_samples: int
    max_epochs: int
    max_concurrent: int
    cpus_per_trial: float
    gpus_per_trial: float
    grace_period: int | None
    reduction_factor: int | None
    max_failures: int
    searcher: str = "tpe"  # tpe | random (both record every trial in optuna.db)
    scheduler: str = "asha"  # asha | none (no early stopping)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", default="all", help="all, or a comma list of upstream,scratch,decoder,full")
    p.add_argument("--preset", default="quick", help="quick (offline, ~10 min on a laptop) or paper (t5-small, GPUs)")
    p.add_argument("--num-samples", type=int, help="trials per trained regime (upstream: one per beam choice)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that ASHA never stops")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: what the resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default: 1 if the cluster has GPUs)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped (default: YAML, else 1)")
    p.add_argument("--reduction-factor", type=int, help="ASHA: keep 1/N of trials at each rung (default: YAML, else 2)")
    p.add_argument("--searcher", default="tpe", choices=["tpe", "random"], help="Optuna sampler: TPE, or random as a baseline")
    p.add_argument("--scheduler", default="asha", choices=["asha", "none"], help="asha stops weak trials early; none runs all to the end")
    p.add_argument("--max-failures", type=int, default=2, help="times a failed trial is retried from its checkpoint")
    p.add_argument("--search-space", type=Path, help="a YAML search space used instead of search_spaces/<regime>.yaml")
    p.add_argument("--results", default="results", help="where study directories go (a path or a storage URI)")
    p.add_argument("--name", help="study name (default: <preset>-<UTC timestamp>)")
    p.add_argument("--resume", metavar="NAME", help="continue the interrupted study NAME in --results")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or host:6379); default: start a local one")
    p.add_argument("--no-analysis", action="store_true", help="skip the analysis report at the end")
    # Every Config field that is neither searched nor set by another flag (see search_spaces/*.yaml for those).
    add_config_flags(p, [f for f in Config.__dataclass_fields__ if f not in PER_TRIAL_FLAGS])
    return p


def parse_regimes(text: str) -> list[str]:
    names = list(REGIME_NAMES) if text == "all" else [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in names if r not in REGIME_NAMES]
    if unknown or not names:
        raise StudyError(f"unknown regime(s) {unknown or [text]}; use all or a comma list of {','.join(REGIME_NAMES)}")
    return list(dict.fromkeys(names))


def resolve(args: argparse.Namespace) -> tuple[Config, Budget, list[str], dict]:
    """Flags + preset -> (config, budget, regimes, search spaces); every check happens before anything is written."""
    if args.preset not in PRESETS:
        raise StudyError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    regimes = parse_regimes(args.regime)
    # Only the Config flags this parser defines (its --regime is a list of regimes, not Config.regime).
    config_flags = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in PER_TRIAL_FLAGS})
    config = config_from_flags(config_flags, Config(**preset["config"]))
    if preset["needs_data"] and "data" not in vars(args) and not args.resume:
        raise StudyError(f"preset {args.preset} needs --data (a pairs file such as fra.txt); the bundled corpus is too small")
    if args.max_epochs is not None:
        if args.max_epochs <= 0:
            raise StudyError(f"--max-epochs must be at least 1, got {args.max_epochs}")
        config = config.replace(epochs=args.max_epochs)
    for flag in ("num_samples", "max_concurrent"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise StudyError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
        raise StudyError("--cpus-per-trial must be positive and --gpus-per-trial non-negative")
    if args.max_failures < 0:
        raise StudyError(f"--max-failures must be non-negative, got {args.max_failures}")
    config = config.replace(cache_dir=str(Path(config.cache_dir).expanduser().resolve()),
                            torch_threads=max(1, int(args.cpus_per_trial)))
    if "://" not in config.data and config.data != "sample" and not config.data.startswith("hf:"):
        config = config.replace(data=str(Path(config.data).expanduser().resolve()))  # trials run elsewhere
    config.validate()
    spaces = {r: load_search_space(args.search_space or default_search_space_path(r)) for r in regimes}
    for regime, space in spaces.items():
        config.replace(regime=regime, **space.fixed).validate()
    budget = Budget(num_samples=args.num_samples or preset["num_samples"], max_epochs=config.epochs,
                    max_concurrent=args.max_concurrent or 0, cpus_per_trial=args.cpus_per_trial,
                    gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else -1,
                    grace_period=args.grace_period, reduction_factor=args.reduction_factor,
                    max_failures=args.max_failures, searcher=args.searcher, scheduler=args.scheduler)
    return config, budget, regimes, spaces


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
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():  # called again in one process (a notebook, the tests): keep that Ray
        return
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except Exception as err:  # noqa: BLE001 - connection errors come in many types
            raise StudyError(f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]} "
                             f"(is `ray start --head` running there?)") from err
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)


def finish_budget(budget: Budget, address: str | None = None) -> Budget:
    """Fill in the defaults that depend on the cluster: GPUs per trial and concurrency."""
    import ray

    resources = ray.cluster_resources()
    if budget.gpus_per_trial < 0:
        budget.gpus_per_trial = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if address and not budget.gpus_per_trial:
            # An autoscaling cluster starts with no GPU worker: without this flag trials would run on CPUs.
            print("warning: the cluster has no GPU yet, so trials get none; pass --gpus-per-trial 1 "
                  "(and --max-concurrent N) to make it scale up GPU workers", file=sys.stderr, flush=True)
    if not budget.max_concurrent:
        by_cpu = int(resources.get("CPU", 1) // budget.cpus_per_trial)
        by_gpu = int(resources.get("GPU", 0) // budget.gpus_per_trial) if budget.gpus_per_trial else by_cpu
        budget.max_concurrent = max(1, min(by_cpu, by_gpu))
    return budget


def run_regime(regime: str, config: Config, budget: Budget, space, where: StudyLocation, data, resume: bool):
    """Search one regime (or continue its search) and return Tune's ResultGrid."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from study.trial import TRAINABLES

    base = config.replace(regime=regime, **space.fixed)
    trainable = tune.with_resources(
        tune.with_parameters(TRAINABLES[regime], base=base.to_dict(), data=data),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial},
    )
    experiment = f"{where.tune_storage}/{regime}"
    trains = regime != "upstream"
    n = budget.num_samples if trains else min(budget.num_samples, _grid_size(space))
    if resume and tune.Tuner.can_restore(experiment):
        print(f"[{regime}] resuming {experiment}", flush=True)
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    else:
        max_epochs = budget.max_epochs if trains else 0
        searcher = ConcurrencyLimiter(make_searcher(where.local, regime, max_epochs, config.seed, budget.searcher),
                                      max_concurrent=budget.max_concurrent)
        tuner = tune.Tuner(
            trainable,
            param_space=space.tune_space(),
            tune_config=tune.TuneConfig(
                search_alg=searcher, num_samples=n, max_concurrent_trials=budget.max_concurrent,
                scheduler=make_scheduler(space, budget.max_epochs, budget.grace_period, budget.reduction_factor)
                if trains and budget.scheduler == "asha" else None,
            ),
            run_config=tune.RunConfig(
                name=regime, storage_path=where.tune_storage,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_bleu",
                                                        checkpoint_score_order="max"),
                failure_config=tune.FailureConfig(max_failures=budget.max_failures),
                verbose=1,
            ),
        )
    return tuner.fit(), n


def _grid_size(space) -> int:
    size = 1
    for spec in space.search.values():
        if spec["distribution"] != "choice":
            return 10**9
        size *= len(spec["values"])
    return size


def unfinished_trials(grid, expected: int) -> int:
    """Trials of the regime's budget that neither finished nor failed (Ctrl-C leaves some pending or unstarted)."""
    return expected - grid.num_terminated - grid.num_errors


def check_optuna_agrees(study_dir: Path, regime: str, grid) -> None:
    """After a restore, Tune rebuilds the searcher from its own pickle: make sure it still wrote to optuna.db."""
    import optuna

    from study.search import optuna_storage_url

    trials = optuna.load_study(study_name=regime, storage=optuna_storage_url(study_dir)).trials
    if len(trials) != len(grid):
        print(f"warning: optuna.db holds {len(trials)} trial(s) of {regime} but Tune ran {len(grid)}; "
              f"trust Tune's results in {study_dir / regime}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _main(args, argv if argv is not None else sys.argv[1:])
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    cache_dir = str(Path(getattr(args, "cache_dir", Config().cache_dir)).expanduser().resolve())
    if args.resume:
        where = StudyLocation(args.results, args.resume, cache_dir)
        if not where.exists():
            raise StudyError(f"no study named {args.resume!r} in {args.results} (nothing to resume); "
                             f"list the folders there and pass one of their names")
        where.pull()
        record = json.loads((where.local / "study.json").read_text())
        args.preset, args.regime = record["preset"], ",".join(record["regimes"])
        args.num_samples, args.max_epochs = record["budget"]["num_samples"], record["budget"]["max_epochs"]
    config, budget, regimes, spaces = resolve(args)
    if args.resume:  # the study's own settings, not today's files and defaults
        config = Config.from_dict(record["config"])
        spaces = {r: parse_search_space({k: v for k, v in raw.items() if k != "source"}, raw["source"])
                  for r, raw in record["search_spaces"].items()}
    name = args.resume or args.name or f"{args.preset}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    where = StudyLocation(args.results, name, config.cache_dir)
    if not args.resume and where.exists():
        raise StudyError(f"{where.describe()} exists already; pick another --name, or continue it with --resume {name}")
    if not args.resume and where.remote is None and where.local.exists():
        raise StudyError(f"{where.local} exists already; pick another --name")

    start_ray(args.address)
    budget = finish_budget(budget, args.address)
    from study.regimes import REGIMES
    from study.train import prepare_data

    # Once, in the driver (pretraining the tiny upstream if a regime needs it and no cache matches);
    # trials get it all through the object store.
    data = prepare_data(config, need_upstream=any(REGIMES[r].pretrained for r in regimes))
    study_dir = where.local
    study_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        write_json(study_dir / "study.json", study_record(config, budget, regimes, args.preset, spaces, name))
        where.push()
    resume_cmd = f"python -m study.run --resume {shlex.quote(name)} --results {shlex.quote(args.results)}"
    rows = []
    for regime in regimes:
        best_file = study_dir / regime / "best.json"
        if best_file.exists():
            print(f"[{regime}] already finished: {best_file}", flush=True)
            rows.append(json.loads(best_file.read_text()))
            continue
        started = time.time()
        grid, expected = run_regime(regime, config, budget, spaces[regime], where, data, bool(args.resume))
        left = unfinished_trials(grid, expected)
        if left:
            where.push()
            print(f"\nstudy interrupted: {left} trial(s) of {regime} unfinished; state saved.\n"
                  f"resume with:\n  {resume_cmd}", flush=True)
            return 130
        check_optuna_agrees(study_dir, regime, grid)
        rows.append(evaluate_best(grid, regime, config.replace(regime=regime, **spaces[regime].fixed), data,
                                  study_dir, time.time() - started))
        where.push()
    summary = write_summary(study_dir, rows)
    print("\n" + summary.to_string(index=False), flush=True)
    if not args.no_analysis:
        _analyze(where)
    where.push()
    print(f"\nresults: {where.describe()}", flush=True)
    return 0


def _analyze(where: StudyLocation) -> None:
    """The analysis report at the end of a study; a failure there must not hide the finished study."""
    from study import analyze

    where.pull(with_trials=True)  # a study at a URI: bring its trial results (not checkpoints) here
    try:
        analyze.main([str(where.local)])
    except Exception as err:  # noqa: BLE001
        print(f"warning: the analysis failed ({type(err).__name__}: {err}); the study's results are complete; "
              f"run `python -m study.analyze {where.local}` to retry", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    sys.exit(main())
