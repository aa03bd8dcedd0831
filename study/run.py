"""The study: one Ray Tune + Optuna + ASHA search per regime, then each regime's best trial on the test split.

    python -m study.run --regime all                 # quick preset: bundled corpus, tiny model, ~10 min on 2 cores
    python -m study.run --preset paper --data fra.txt --gpus-per-trial 1
    python -m study.run --resume NAME                # continue an interrupted study
    python -m study.run --replicates 5 --name quick  # 5 studies at seeds 0-4, then the verdict across them
    python -m study.run --max-train-pairs 500,2000,8000 --name q   # the data sweep: a study per size

Results land in `results/<name>/`: study.json, optuna.db, one Tune experiment per regime, each regime's
best.json / test.hyp.txt / test.ref.txt, and summary.csv.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from study import sweep
from study.cli import ArgumentParser, run_cli
from study.common import check_sqlite, read_json_file, require_hub, write_json
from study.config import FIELDS, PRESETS, Budget, Config, StudyError, add_config_flags, config_from_flags
from study.model.regimes import REGIMES, parse_regimes
from study.model.weights import check_pretrained_weights
from study.outputs.record import (
    MACHINE_FIELDS,
    searched_names,
    settings_from_record,
    study_record,
    write_summary,
)
from study.outputs.storage import StudyLocation, is_uri
from study.pipeline import Timings
from study.tuning.space import default_search_space_path, load_search_space

log = logging.getLogger("study.run")

# Config fields that are not study.run flags: the search samples them, or a flag of its own sets them
# (--max-epochs, --regime, --cpus-per-trial). Every other Config field is a flag of the same name.
NOT_FLAGS = ("lr", "batch_size", "num_beams", "val_beams", "epochs", "regime", "torch_threads")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", default="all", help=f"all (the original four), all+extra (every regime), or a comma list of "
                                                     f"{','.join(REGIMES)}")
    p.add_argument("--preset", default="quick", help="quick (offline, ~10 min on a laptop) or paper (t5-small, GPUs)")
    p.add_argument("--num-samples", type=int, help="trials per trained regime (upstream: one per beam choice)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that ASHA never stops")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: what the resources allow)")
    p.add_argument("--regimes-at-once", type=int, metavar="N",
                   help="regimes searched side by side, sharing the trial slots (default: all; 1: one after another)")
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
                                             "seeds, for test scores as mean ± sd (default: the preset's, 4 quick and 3 paper)")
    p.add_argument("--search-space", type=Path, help="a YAML search space used instead of search_spaces/<regime>.yaml")
    p.add_argument("--results", default="results", help="where study directories go (a path or a storage URI)")
    p.add_argument("--name", help="study name (default: <preset>-<UTC timestamp>)")
    p.add_argument("--resume", metavar="NAME", help="continue the interrupted study NAME in --results")
    p.add_argument("--replicates", type=int, metavar="K",
                   help="K studies at seeds --seed, --seed+1, ... (each its own search, upstream and seed runs, "
                        "named <name>-seed<N>), one after another, then the verdict across them in "
                        "<name>-replicates/ (study/replicates.py)")
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
    add_config_flags(p, [f for f in FIELDS if f not in (*NOT_FLAGS, "max_train_pairs")])
    # a number, or a comma list of them: the data sweep (read by study.sweep.sizes, so a bad one is one line)
    p.add_argument("--max-train-pairs", type=sweep.flag, metavar="N[,N...]", default=argparse.SUPPRESS,
                   help=f"{FIELDS['max_train_pairs'].metadata['help']} (default: the preset's); a comma list "
                        f"(500,2000,8000) runs the data sweep: a study per size, named <name>-pairs<N>, on nested "
                        f"pairs with one tokenizer and upstream, then <name>-data-sweep/ (study/sweep.py)")
    return p


def resolve(args: argparse.Namespace) -> tuple[Config, Budget, list[str], dict]:
    """A new study's settings from flags + preset -> (config, budget, regimes, search spaces); every check happens
    before anything is written. (A resumed study reads its own: `outputs.record.settings_from_record`.)"""
    if args.preset not in PRESETS:
        raise StudyError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    regimes = parse_regimes(args.regime)
    _check_flags(args)
    # Only the Config flags this parser defines (its --regime is a list of regimes, not Config.regime).
    config_flags = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in NOT_FLAGS})
    config = config_from_flags(config_flags, Config(**preset["config"]))
    if preset["needs_data"] and "data" not in vars(args):
        raise StudyError(f"preset {args.preset} needs --data (a pairs file such as fra.txt); the bundled corpus is too small")
    if args.max_epochs is not None:
        config = config.replace(epochs=args.max_epochs)
    config = config.replace(cache_dir=_cache_dir(args), torch_threads=max(1, int(args.cpus_per_trial)))
    if "://" not in config.data and config.data != "sample" and not config.data.startswith("hf:"):
        config = config.replace(data=str(Path(config.data).expanduser().resolve()))  # trials run elsewhere
    _check_sources(config, regimes)
    spaces = {r: load_search_space(args.search_space or default_search_space_path(r)) for r in regimes}
    num_samples = args.num_samples or preset["num_samples"]
    for regime, space in spaces.items():
        config.replace(regime=regime, **space.trial_base())  # checked when made: a bad fixed value fails here
        if REGIMES[regime].trains:  # a width the planned trials cannot carry fails here, before anything is written
            from study.tuning.searcher import planned_trials, search_width

            search_width(space, planned_trials(True, num_samples, space))
    budget = Budget(num_samples=num_samples, max_epochs=config.epochs, grace_period=args.grace_period,
                    reduction_factor=args.reduction_factor, searcher=args.searcher, scheduler=args.scheduler,
                    seeds=args.seeds or preset.get("seeds", 1), same_draws=args.same_draws,
                    keep_checkpoints=args.keep_checkpoints,
                    **{**_machine(args), "regimes_at_once": args.regimes_at_once or len(regimes)})
    return config, budget, regimes, spaces


def _check_flags(args: argparse.Namespace) -> None:
    """The numeric flags' ranges, for a new study and a resumed one alike."""
    if args.max_epochs is not None and args.max_epochs <= 0:
        raise StudyError(f"--max-epochs must be at least 1, got {args.max_epochs}")
    for flag in ("num_samples", "max_concurrent", "regimes_at_once"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise StudyError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
        raise StudyError("--cpus-per-trial must be positive and --gpus-per-trial non-negative")
    if args.max_failures < 0:
        raise StudyError(f"--max-failures must be non-negative, got {args.max_failures}")
    if args.seeds is not None and args.seeds < 1:
        raise StudyError(f"--seeds must be at least 1 (the search's own run), got {args.seeds}")


def _machine(args: argparse.Namespace) -> dict:
    """The budget's MACHINE_FIELDS from today's flags (None where the cluster decides, once Ray is up)."""
    return {"max_concurrent": args.max_concurrent, "cpus_per_trial": args.cpus_per_trial,
            "gpus_per_trial": args.gpus_per_trial, "max_failures": args.max_failures,
            "regimes_at_once": args.regimes_at_once}


def _cache_dir(args: argparse.Namespace) -> str:
    return str(Path(getattr(args, "cache_dir", Config().cache_dir)).expanduser().resolve())


def _check_sources(config: Config, regimes: list[str]) -> None:
    """Offline, a hub model or dataset would fail after a minute of retries, once Ray is up: fail now, in seconds;
    likewise a model directory without weights for a pretrained regime, before Ray starts."""
    if config.model != "tiny":
        require_hub(config.model, "model", "--model tiny or a local model directory")
    if config.data.startswith("hf:"):
        require_hub(config.data, "dataset", "a local file instead, e.g. --data path/to/pairs.tsv")
    for regime in regimes:
        if REGIMES[regime].pretrained:
            check_pretrained_weights(config.model, regime)


# What `--resume` takes from the command resuming a study: where the study is, how to run it now (the machine's
# resources: MACHINE_FIELDS) and what to do beside it. Every other flag defines the study, which its record fixes.
RESUME_FLAGS = ("resume", "results", "cache_dir", "more_trials", "address", "no_analysis", "mlflow",
                "keep_checkpoints", *MACHINE_FIELDS)


def ignored_on_resume(args: argparse.Namespace) -> list[str]:
    """The study-defining flags given with --resume (set to other than their default), which its record overrides.

    Warned about, not refused: a resume command is often the original one with --resume added (the shell's history,
    a job's retry), whose flags the record repeats; refused, it would fail for nothing. The record wins either way,
    and the warning says which flags did not apply."""
    return [action.option_strings[0] for action in build_parser()._actions
            if action.option_strings and action.dest not in (*RESUME_FLAGS, "help")
            and getattr(args, action.dest, action.default) != action.default]


def resumed_settings(args: argparse.Namespace, where: StudyLocation) -> tuple[Config, Budget, list[str], dict]:
    """A resumed study's settings, from its own record (study.json) and today's resource flags; its optuna.db
    checked, since a damaged one cannot be continued."""
    if not where.exists():
        raise StudyError(f"no study named {args.resume!r} in {args.results} (nothing to resume); "
                         f"list the folders there and pass one of their names")
    _check_flags(args)
    if ignored := ignored_on_resume(args):
        applying = [f"--{name.replace('_', '-')}" for name in (*MACHINE_FIELDS, "keep_checkpoints")]
        print(f"warning: {' '.join(ignored)} ignored: --resume continues {args.resume} as its study.json records it "
              f"(only {', '.join(applying[:-1])} and {applying[-1]} apply)", file=sys.stderr, flush=True)
    where.pull()
    record = read_json_file(where.local / "study.json")
    check_sqlite(where.local / "optuna.db")
    config, budget, regimes, spaces = settings_from_record(record, _machine(args), args.keep_checkpoints)
    _check_sources(config, regimes)
    return config, budget, regimes, spaces


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_cli(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    results = Path(args.results).expanduser()
    if not is_uri(args.results) and results.exists() and not results.is_dir():
        raise StudyError(f"--results {args.results} is a file, not a folder; pass the folder study directories go in "
                         f"(it is created if missing)")
    if args.more_trials is not None and (not args.resume or args.more_trials < 1):
        raise StudyError(f"--more-trials N extends an existing study by N >= 1 trials per regime: pass --resume NAME "
                         f"with it (got --more-trials {args.more_trials}" + ("" if args.resume else " alone") + ")")
    found = sweep.sizes(getattr(args, "max_train_pairs", None))
    if found is not None and len(found) > 1:  # a study per size, each by this very function, then the sweep's analysis
        return sweep.run_sweep(args, found, _main, resolve, cache_dir)
    if found is not None:
        args.max_train_pairs = found[0]
    if args.replicates is not None:  # K studies, each by this very function, then the verdict across them
        from study import replicates

        replicates.check(args)
        return replicates.run_replicates(args, _main, resolve(args)[0].seed, cache_dir)
    name = args.resume or args.name or f"{args.preset}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    where = StudyLocation(args.results, name, cache_dir)
    if args.resume:  # the study's own settings, from its record
        config, budget, regimes, spaces = resumed_settings(args, where)
    else:
        config, budget, regimes, spaces = resolve(args)
        if where.exists():
            raise StudyError(f"{where.describe()} exists already; pick another --name, or continue it with --resume {name}")
        if where.remote is None and where.local.exists():
            raise StudyError(f"{where.local} exists already; pick another --name")
    if args.mlflow:
        from study.outputs.tracking import check_tracking_uri

        check_tracking_uri(args.mlflow)

    from study.pipeline import Interrupted, StudyRun, run_regimes
    from study.training.pretraining import prepare_data_upstream_later
    from study.tuning.extend import plan_extensions
    from study.tuning.runner import finish_budget, start_ray

    clock = Timings()
    start_ray(args.address)
    budget = finish_budget(budget, args.address)
    # Once, in the driver; trials get it through the object store. The tiny upstream (pretrained if no cache
    # matches) comes later, beside the searches of the regimes that need none (study/pipeline.py).
    with clock.phase("data"):  # data and tokenizer
        data, add_upstream = prepare_data_upstream_later(config, any(REGIMES[r].pretrained for r in regimes))
    searched = searched_names(spaces)
    study_dir = where.local
    study_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        record = study_record(config, budget, regimes, args.preset, spaces, name)
        if getattr(args, "series", None):  # one of several studies (study/series.py): which, and what they share
            record["series"] = args.series
        write_json(study_dir / "study.json", record)
        where.push()
    resume_cmd = f"python -m study.run --resume {shlex.quote(name)} --results {shlex.quote(args.results)}"
    # --more-trials: the extensions every regime's search runs (study/tuning/extend.py)
    extensions = plan_extensions(study_dir, regimes, args.more_trials) if args.more_trials is not None else []
    resume_cmd += f" --more-trials {args.more_trials}" if extensions else ""
    run = StudyRun(config, budget, spaces, where, data, searched, name, bool(args.resume), extensions,
                   mlflow=args.mlflow, clock=clock, add_upstream=add_upstream,
                   # a local Ray's driver pretrains on the trials' CPUs: it holds one trial's worth meanwhile
                   upstream_cpus=0.0 if args.address else budget.cpus_per_trial)
    try:  # every regime's search, seed runs, test scoring, export and pruning, side by side (study/pipeline.py)
        with clock.phase("regimes"):
            rows = run_regimes(run, regimes, budget.regimes_at_once)
    except Interrupted as why:
        where.push()
        print(f"\nstudy interrupted ({why}); state saved.\nresume with:\n  {resume_cmd}", flush=True)
        return 130
    except Exception:  # one regime failed; the others stopped with their state saved
        where.push()
        print(f"\nstudy stopped by the error below; every regime's state is saved.\nonce it is fixed, resume with:\n"
              f"  {resume_cmd}", file=sys.stderr, flush=True)
        raise
    summary = write_summary(study_dir, list(rows.values()), searched)
    print("\n" + summary.to_string(index=False), flush=True)
    clock.record(study_dir / "study.json", budget.max_concurrent, budget.regimes_at_once)  # before the analysis, which reports it
    if not args.no_analysis:
        with clock.phase("analysis"):
            _analyze(where)
        clock.record(study_dir / "study.json", budget.max_concurrent, budget.regimes_at_once)
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
