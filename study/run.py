"""The study: one Ray Tune + Optuna + ASHA search per regime, then each regime's best trial on the test split.

    python -m study.run --regime all                 # quick preset: bundled corpus, tiny model, ~10 min on 2 cores
    python -m study.run --preset paper --data fra.txt --gpus-per-trial 1
    python -m study.run --resume NAME                # continue an interrupted study

Results land in `results/<name>/`: study.json, optuna.db, one Tune experiment per regime, each regime's
best.json / test.hyp.txt / test.ref.txt, and summary.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from study.cli import ArgumentParser, run_cli
from study.common import check_sqlite, read_json_file, require_hub, write_json
from study.config import FIELDS, PRESETS, Budget, Config, StudyError, add_config_flags, config_from_flags
from study.model.regimes import REGIMES, parse_regimes
from study.model.weights import check_pretrained_weights
from study.results.record import searched_names, study_record, write_summary
from study.results.storage import StudyLocation, is_uri
from study.tuning.space import default_search_space_path, load_search_space, parse_search_space

log = logging.getLogger("study.run")

# Config fields that are not study.run flags: the search samples them, or a flag of its own sets them
# (--max-epochs, --regime, --cpus-per-trial). Every other Config field is a flag of the same name.
NOT_FLAGS = ("lr", "batch_size", "num_beams", "epochs", "regime", "torch_threads")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", default="all", help=f"all (the original four), all+extra (every regime), or a comma list of "
                                                     f"{','.join(REGIMES)}")
    p.add_argument("--preset", default="quick", help="quick (offline, ~10 min on a laptop) or paper (t5-small, GPUs)")
    p.add_argument("--num-samples", type=int, help="trials per trained regime (upstream: one per beam choice)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that ASHA never stops")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: what the resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default: 1 if the cluster has GPUs)")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped (default: YAML, else 1)")
    p.add_argument("--reduction-factor", type=int, help="ASHA: keep 1/N of trials at each rung (default: YAML, else 2)")
    p.add_argument("--searcher", default="tpe", choices=["tpe", "random", "gp"],
                   help="Optuna sampler: TPE, Optuna's Gaussian-process sampler, or random as a baseline")
    p.add_argument("--scheduler", default="asha", choices=["asha", "none"], help="asha stops weak trials early; none runs all to the end")
    p.add_argument("--same-draws", action="store_true",
                   help="seed every regime's sampler with --seed (common random numbers) instead of a seed per regime")
    p.add_argument("--max-failures", type=int, default=2, help="times a failed trial is retried from its checkpoint")
    p.add_argument("--seeds", type=int, help="runs of each regime's best configuration, the search's and N-1 more "
                                             "seeds, for test scores as mean ± sd (default: 3 in both presets)")
    p.add_argument("--search-space", type=Path, help="a YAML search space used instead of search_spaces/<regime>.yaml")
    p.add_argument("--results", default="results", help="where study directories go (a path or a storage URI)")
    p.add_argument("--name", help="study name (default: <preset>-<UTC timestamp>)")
    p.add_argument("--resume", metavar="NAME", help="continue the interrupted study NAME in --results")
    p.add_argument("--more-trials", type=int, metavar="N",
                   help="with --resume: N more trials for every trained regime's search, continuing its Optuna "
                        "study; a regime is scored on test again only if its best trial changed")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto or host:6379); default: start a local one")
    p.add_argument("--no-analysis", action="store_true", help="skip the analysis report at the end")
    p.add_argument("--mlflow", metavar="URI", help="log every trial and each regime's best to this MLflow tracking "
                                                   "URI (sqlite:///mlflow.db, file:mlruns, http://host:5000)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every trial's checkpoints (default: only running trials' and each regime's best)")
    # Every Config field that is neither searched nor set by another flag (see search_spaces/*.yaml for those).
    add_config_flags(p, [f for f in FIELDS if f not in NOT_FLAGS])
    return p


def resolve(args: argparse.Namespace) -> tuple[Config, Budget, list[str], dict]:
    """Flags + preset -> (config, budget, regimes, search spaces); every check happens before anything is written."""
    if args.preset not in PRESETS:
        raise StudyError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    regimes = parse_regimes(args.regime)
    # Only the Config flags this parser defines (its --regime is a list of regimes, not Config.regime).
    config_flags = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in NOT_FLAGS})
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
    if args.seeds is not None and args.seeds < 1:
        raise StudyError(f"--seeds must be at least 1 (the search's own run), got {args.seeds}")
    config = config.replace(cache_dir=str(Path(config.cache_dir).expanduser().resolve()),
                            torch_threads=max(1, int(args.cpus_per_trial)))
    if "://" not in config.data and config.data != "sample" and not config.data.startswith("hf:"):
        config = config.replace(data=str(Path(config.data).expanduser().resolve()))  # trials run elsewhere
    # Offline, a hub model or dataset would fail after a minute of retries, once Ray is up: fail now, in seconds.
    if config.model != "tiny":
        require_hub(config.model, "model", "--model tiny or a local model directory")
    if config.data.startswith("hf:"):
        require_hub(config.data, "dataset", "a local file instead, e.g. --data path/to/pairs.tsv")
    for regime in regimes:  # here, not in the trials: a model directory without weights fails before Ray starts
        if REGIMES[regime].pretrained:
            check_pretrained_weights(config.model, regime)
    spaces = {r: load_search_space(args.search_space or default_search_space_path(r)) for r in regimes}
    for regime, space in spaces.items():
        config.replace(regime=regime, **space.fixed)  # checked when made: a bad fixed value fails here
    budget = Budget(num_samples=args.num_samples or preset["num_samples"], max_epochs=config.epochs,
                    max_concurrent=args.max_concurrent or 0, cpus_per_trial=args.cpus_per_trial,
                    gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else -1,
                    grace_period=args.grace_period, reduction_factor=args.reduction_factor,
                    max_failures=args.max_failures, searcher=args.searcher, scheduler=args.scheduler,
                    same_draws=args.same_draws, keep_checkpoints=args.keep_checkpoints)
    budget.seeds = args.seeds or preset.get("seeds", 1)
    return config, budget, regimes, spaces


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_cli(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    cache_dir = str(Path(getattr(args, "cache_dir", Config().cache_dir)).expanduser().resolve())
    results = Path(args.results).expanduser()
    if not is_uri(args.results) and results.exists() and not results.is_dir():
        raise StudyError(f"--results {args.results} is a file, not a folder; pass the folder study directories go in "
                         f"(it is created if missing)")
    if args.more_trials is not None and (not args.resume or args.more_trials < 1):
        raise StudyError(f"--more-trials N extends an existing study by N >= 1 trials per regime: pass --resume NAME "
                         f"with it (got --more-trials {args.more_trials}" + ("" if args.resume else " alone") + ")")
    if args.resume:
        where = StudyLocation(args.results, args.resume, cache_dir)
        if not where.exists():
            raise StudyError(f"no study named {args.resume!r} in {args.results} (nothing to resume); "
                             f"list the folders there and pass one of their names")
        where.pull()
        record = read_json_file(where.local / "study.json")
        check_sqlite(where.local / "optuna.db")  # the searchers' state: a damaged one cannot be continued
        args.preset, args.regime = record["preset"], ",".join(record["regimes"])
        args.num_samples, args.max_epochs = record["budget"]["num_samples"], record["budget"]["max_epochs"]
        args.seeds = record["budget"].get("seeds", 1)  # studies recorded before --seeds ran one seed
        # a regime not started before the interruption gets the sampler and scheduler the study started with
        args.searcher, args.scheduler = record["budget"].get("searcher", "tpe"), record["budget"].get("scheduler", "asha")
        args.same_draws = record["budget"].get("same_draws", False)
        # a study started with --keep-checkpoints keeps them when resumed
        args.keep_checkpoints = args.keep_checkpoints or record["budget"].get("keep_checkpoints", False)
    config, budget, regimes, spaces = resolve(args)
    if args.mlflow:
        from study.results.tracking import check_tracking_uri

        check_tracking_uri(args.mlflow)
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

    from study.results.export import export_or_warn
    from study.results.holdout import evaluate_best
    from study.results.record import count_test_scoring
    from study.results.tracking import log_best_or_warn, trial_callbacks
    from study.training.upstream import prepare_data_and_upstream
    from study.tuning.best import best_trial
    from study.tuning.extend import extend_regime, plan_extensions
    from study.tuning.retention import prune_regime, saved_results
    from study.tuning.runner import (
        check_optuna_agrees,
        finish_budget,
        run_regime,
        start_ray,
        unfinished_trials,
    )
    from study.tuning.seeds import extra_seeds, run_seed_trials

    clock = Timings()
    start_ray(args.address)
    budget = finish_budget(budget, args.address)
    # Once, in the driver (pretraining the tiny upstream if a regime needs it and no cache matches);
    # trials get it all through the object store.
    with clock.phase("data_and_upstream"):  # data, tokenizer, and the tiny upstream's pretraining (or its cache)
        data = prepare_data_and_upstream(config, need_upstream=any(REGIMES[r].pretrained for r in regimes))
    searched = searched_names(spaces)
    study_dir = where.local
    study_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        write_json(study_dir / "study.json", study_record(config, budget, regimes, args.preset, spaces, name))
        where.push()
    resume_cmd = f"python -m study.run --resume {shlex.quote(name)} --results {shlex.quote(args.results)}"
    # --more-trials: the extensions every regime's search runs (study/tuning/extend.py)
    extensions = plan_extensions(study_dir, regimes, args.more_trials) if args.more_trials is not None else []
    resume_cmd += f" --more-trials {args.more_trials}" if extensions else ""
    rows = []
    try:
        for regime in regimes:
            best_file = study_dir / regime / "best.json"
            if best_file.exists() and not extensions:
                print(f"[{regime}] already finished: {best_file}", flush=True)
                rows.append(read_json_file(best_file))
                # Interrupted after scoring but before the export: export now, from the checkpoint best.json names
                # (pruning comes after the export, so it is still there).
                if not (study_dir / regime / "model" / "config.json").is_file():
                    export_or_warn(study_dir, regime, data, where.tune_storage)
                if not budget.keep_checkpoints:  # interrupted before its pruning ended: prune (again is harmless)
                    grid, seed_grid = saved_results(where.tune_storage, regime)
                    prune_regime(grid, regime, study_dir, seed_grid)
                where.push()
                continue
            clock.regime_phase(regime, "search")
            grid, expected = run_regime(regime, config, budget, spaces[regime], study_dir, where.tune_storage, data,
                                        bool(args.resume), callbacks=trial_callbacks(args.mlflow, name, regime))
            standing = False  # --more-trials left the regime's best trial, and so its test score, as they were
            if extensions:
                grid, expected, standing = extend_regime(regime, config, budget, spaces[regime], study_dir,
                                                         where.tune_storage, data, grid, expected, extensions,
                                                         trial_callbacks(args.mlflow, name, regime))
            left = unfinished_trials(grid, expected)
            if left:
                where.push()
                print(f"\nstudy interrupted: {left} trial(s) of {regime} unfinished; state saved.\n"
                      f"resume with:\n  {resume_cmd}", flush=True)
                return 130
            check_optuna_agrees(study_dir, regime, grid)
            if standing:
                clock.regime_phase(regime, None)  # its search time is recorded; nothing else runs for it
                rows.append(read_json_file(best_file))
                where.push()
                continue
            base = config.replace(regime=regime, **spaces[regime].fixed)
            seed_grid = None
            clock.regime_phase(regime, "seed_runs")
            search_wall_s = clock.regimes[regime]["search_s"]  # the search and its extensions, as timed above
            if budget.seeds > 1 and REGIMES[regime].trains:  # an untrained regime gives the same scores every seed
                seeds = extra_seeds(config.seed, budget.seeds)
                best = best_trial(grid, regime, study_dir)  # its seed re-runs stop at its selected epoch
                seed_grid = run_seed_trials(regime, base, budget, best.params, seeds, where.tune_storage, data,
                                            bool(args.resume), epochs=best.best_epoch)
                if unfinished_trials(seed_grid, len(seeds)):
                    where.push()
                    print(f"\nstudy interrupted during {regime}'s seed runs; state saved.\n"
                          f"resume with:\n  {resume_cmd}", flush=True)
                    return 130
            clock.regime_phase(regime, "test_scoring")
            # counted before the scoring, so that an interruption between the two never leaves a look at the test
            # split uncounted (one interrupted while scoring counts twice once resumed: it may have looked twice)
            count_test_scoring(study_dir, regime)  # study.json's test_scored
            rows.append(evaluate_best(grid, regime, base, data, study_dir, search_wall_s, searched, seed_grid=seed_grid,
                                      resources={"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial}))
            clock.trials_ended(grid, seed_grid)
            clock.regime_phase(regime, "export")
            export_or_warn(study_dir, regime, data, where.tune_storage)  # <regime>/model/: a Hugging Face folder
            log_best_or_warn(args.mlflow, study_dir, regime, name)  # --mlflow: test scores and the model folder
            clock.regime_phase(regime, "pruning")
            if not budget.keep_checkpoints:  # scored: the best trial's best checkpoint alone stays, model only
                prune_regime(grid, regime, study_dir, seed_grid)
            clock.regime_phase(regime, None)
            where.push()
    except KeyboardInterrupt:  # Ctrl-C between searches (a Tune search saves and returns on its own): resumable
        where.push()
        print(f"\nstudy interrupted during {regime}'s wrap-up; state saved.\nresume with:\n  {resume_cmd}", flush=True)
        return 130
    summary = write_summary(study_dir, rows, searched)
    print("\n" + summary.to_string(index=False), flush=True)
    clock.record(study_dir / "study.json", budget.max_concurrent)  # before the analysis, which reports it
    if not args.no_analysis:
        with clock.phase("analysis"):
            _analyze(where)
        clock.record(study_dir / "study.json", budget.max_concurrent)
    where.push()
    print(f"\nresults: {where.describe()}", flush=True)
    return 0


class Timings:
    """Where a study's minutes went (study.json's `timings`, the report's table): the data, each regime's search,
    seed runs, test scoring, export and pruning, the analysis, and how busy the trial slots were — the trials'
    own seconds over slots x the time from the first search's start to the last test scoring's end. A resumed
    study records the run that finished it."""

    def __init__(self) -> None:
        self.start = time.time()
        self.phases: dict[str, float] = {}
        self.regimes: dict[str, dict[str, float]] = {}
        self._open: tuple[str, str, float] | None = None
        self.first_search: float | None = None
        self.last_scoring: float | None = None
        self.trial_seconds = 0.0

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
        if self._open is not None:
            done_regime, done_name, began = self._open
            self.regimes.setdefault(done_regime, {})[f"{done_name}_s"] = now - began
        self._open = (regime, name, now) if name else None
        if name == "search" and self.first_search is None:
            self.first_search = now

    def trials_ended(self, *grids) -> None:
        """The trials' own seconds (Tune's time_this_iter_s: training and validation), once a regime is scored:
        the epochs reported in this run only, so that a resumed study does not count what ran before it."""
        self.last_scoring = time.time()
        for grid in grids:
            for result in grid or []:
                history = result.metrics_dataframe
                if history is None or history.empty or "time_this_iter_s" not in history:
                    continue
                ran_here = history[history["timestamp"] >= int(self.start)]  # Tune's timestamp: whole seconds
                self.trial_seconds += float(ran_here["time_this_iter_s"].sum())

    def record(self, path: Path, slots: int) -> None:
        span = (self.last_scoring - self.first_search) if self.first_search and self.last_scoring else None
        timings = {"wall_s": time.time() - self.start, **self.phases, "regimes": self.regimes,
                   "trial_seconds": self.trial_seconds, "slots": slots,
                   "slot_busy_share": self.trial_seconds / (slots * span) if span else None}
        record = read_json_file(path)
        write_json(path, {**record, "timings": timings})


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
