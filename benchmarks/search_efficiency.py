"""Search efficiency over seeds: TPE + ASHA, TPE alone, random + ASHA and random alone, at the same trial count.

    python benchmarks/search_efficiency.py                                 # 4 arms x 5 seeds, quick preset
    python benchmarks/search_efficiency.py --seeds 2 --num-samples 4 --max-epochs 2   # a small budget
    python benchmarks/search_efficiency.py --name mine                     # a rerun reuses finished studies

Each arm and seed is one study, `python -m study.run --regime scratch --preset quick --seed S ...` in a
subprocess, with the same search space (search_spaces/scratch.yaml), trial count and epoch budget:

  tpe_asha     - the study as it is: `--searcher tpe --scheduler asha`;
  tpe          - `--searcher tpe --scheduler none`: TPE, every trial runs every epoch;
  random_asha  - `--searcher random --scheduler asha`: Optuna's RandomSampler, ASHA stopping;
  random       - `--searcher random --scheduler none`: random search, no pruning (the baseline).

A seed S seeds the whole study (the regime's sampler seed derives from it, model init, batch order), so
at one seed every arm starts from the same random draws: TPE's random start is the random arms' first
trials, and the arms differ only in what TPE and ASHA do after it. The seeds are 0 … N-1 (`--first-seed`).

Reads `<results>/<name>/scratch/*/result.json` (one line per epoch a trial ran) and `best.json`, and writes
one record per arm and seed — trials, epochs consumed, trial-seconds (the sum of every trial's own time),
pruned trials, the best trial's validation BLEU (by its best epoch, as the study selects) and its test BLEU
— then per arm the mean ± sd over seeds of best val BLEU, test BLEU, epochs and trial-seconds. Target: TPE +
ASHA's mean best val BLEU at least random alone's, with at most 50 % of its epochs. Any other flag is passed
to every `study.run` command (e.g. `--tiny-d-model 64 --max-eval-pairs 100`). JSON goes to
benchmarks/out/search_efficiency.json; the studies (and a log of each command) to benchmarks/out/search/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/search_efficiency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import StudyError  # noqa: E402

NAME = "search_efficiency"
REGIME = "scratch"
BASELINE, CANDIDATE = "random", "tpe_asha"
BLEU_TARGET, EPOCH_TARGET = 1.0, 0.5  # candidate's mean best val BLEU >= baseline's, with <= 50 % of its epochs
# arm -> (label, study.run flags)
ARMS: dict[str, tuple[str, list[str]]] = {
    "tpe_asha": ("TPE + ASHA", ["--searcher", "tpe", "--scheduler", "asha"]),
    "tpe": ("TPE alone", ["--searcher", "tpe", "--scheduler", "none"]),
    "random_asha": ("random + ASHA", ["--searcher", "random", "--scheduler", "asha"]),
    "random": ("random alone", ["--searcher", "random", "--scheduler", "none"]),
}
MEASURES = ("best_val_bleu", "test_bleu", "epochs", "trial_seconds")

# runner(command, log_file) -> exit status; the default runs it in a subprocess from the repository root.
Runner = Callable[[list[str], Path], int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/search_efficiency.py", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--seeds", type=int, default=5, help="studies per arm, seeds first-seed … first-seed+N-1 (default 5)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--num-samples", type=int, help="trials per study (default: the quick preset's)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped (default: the quick preset's)")
    p.add_argument("--max-train-pairs", type=int, help="training pairs per trial (default: the quick preset's)")
    p.add_argument("--data", help="pairs (default: the quick preset's bundled corpus)")
    p.add_argument("--cache-dir", help="the studies' cache (default: the study's own default)")
    p.add_argument("--results", type=Path, default=common.OUT_DIR / "search", help="where the studies go")
    p.add_argument("--name", help="prefix of the study names (default search-<UTC time>); finished studies of that "
                                  "name are reused, not rerun")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {','.join(ARMS)} (default all)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/search_efficiency.json)")
    return p


def quick_budget() -> dict:
    """The quick preset's trial count and epochs: the defaults of --num-samples and --max-epochs."""
    from study.config import PRESETS

    preset = PRESETS["quick"]
    return {"num_samples": preset["num_samples"], "max_epochs": preset["config"]["epochs"]}


def study_run_has(*flags: str) -> bool:
    """Whether `python -m study.run` accepts every one of `flags`."""
    from study.run import build_parser as study_parser

    known = study_parser()._option_string_actions
    return all(flag in known for flag in flags)


def study_command(args: argparse.Namespace, name: str, seed: int, arm_flags: list[str], extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "study.run", "--regime", REGIME, "--preset", "quick",
           "--num-samples", str(args.num_samples), "--max-epochs", str(args.max_epochs),
           "--results", str(Path(args.results).resolve()), "--name", name, "--seed", str(seed), "--no-analysis"]
    if study_run_has("--seeds"):  # the search is measured, not re-runs of its best configuration
        cmd += ["--seeds", "1"]
    if args.data:
        cmd += ["--data", args.data]
    if args.max_train_pairs:
        cmd += ["--max-train-pairs", str(args.max_train_pairs)]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    return cmd + arm_flags + extra


def run_subprocess(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f:
        return subprocess.run(cmd, cwd=common.ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


def summarize_study(study_dir: Path, regime: str = REGIME) -> dict:
    """Trials, epochs consumed and best scores of a finished study, from Tune's result.json files and best.json."""
    trials = []
    for path in sorted((study_dir / regime).glob("*/result.json")):
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        bleus = [line["val_bleu"] for line in lines if line.get("val_bleu") is not None]
        searched = (lines[0].get("config") or {}) if lines else {}
        trials.append({"trial": path.parent.name, "epochs": len(lines), "best_val_bleu": max(bleus, default=None),
                       "seconds": max((line.get("time_total_s") or 0.0 for line in lines), default=0.0),
                       **{k: searched.get(k) for k in ("lr", "batch_size", "num_beams")}})
    if not trials:
        raise StudyError(f"no trial results in {study_dir / regime} (expected */result.json)")
    best_file = study_dir / regime / "best.json"
    if not best_file.is_file():
        raise StudyError(f"{best_file} is missing: the study did not finish; rerun it (same --name) to complete it")
    best = json.loads(best_file.read_text(encoding="utf-8"))
    return {"trials": len(trials), "epochs": sum(t["epochs"] for t in trials),
            "epochs_per_trial": [t["epochs"] for t in trials],
            "trial_seconds": sum(t["seconds"] for t in trials),
            "best_val_bleu": best.get("best_val_bleu"), "test_bleu": best.get("test_bleu"),
            "search_wall_s": best.get("search_wall_s"), "pruned": best.get("pruned"),
            "best_trial": {k: best.get(k) for k in ("lr", "batch_size", "num_beams")}, "per_trial": trials}


def mean_sd(values: list[float | None]) -> dict:
    """Mean and sample standard deviation (None with fewer than two values) of the values that exist."""
    present = [float(v) for v in values if v is not None]
    return {"mean": statistics.fmean(present) if present else None,
            "sd": statistics.stdev(present) if len(present) >= 2 else None, "n": len(present)}


def aggregate(records: list[dict]) -> dict[str, dict]:
    """Per arm, over its seeds: mean ± sd of every measure."""
    arms: dict[str, dict] = {}
    for arm in dict.fromkeys(r["arm"] for r in records):
        mine = [r for r in records if r["arm"] == arm]
        arms[arm] = {"label": mine[0]["label"], "seeds": [r["seed"] for r in mine],
                     **{m: mean_sd([r[m] for r in mine]) for m in MEASURES}}
    return arms


def compare(arms: dict[str, dict]) -> dict:
    """TPE + ASHA against random alone, on the means over seeds."""
    if CANDIDATE not in arms or BASELINE not in arms:
        return {}
    a, b = arms[CANDIDATE], arms[BASELINE]
    bleu = common.ratio(a["best_val_bleu"]["mean"] or 0.0, b["best_val_bleu"]["mean"] or 0.0)
    epochs = common.ratio(a["epochs"]["mean"] or 0.0, b["epochs"]["mean"] or 0.0)
    met = None if bleu is None or epochs is None else bleu >= BLEU_TARGET and epochs <= EPOCH_TARGET
    return {"candidate": CANDIDATE, "baseline": BASELINE, "bleu_ratio": bleu, "epoch_ratio": epochs,
            "trial_seconds_ratio": common.ratio(a["trial_seconds"]["mean"] or 0.0, b["trial_seconds"]["mean"] or 0.0),
            "targets": {"bleu_ratio_at_least": BLEU_TARGET, "epoch_ratio_at_most": EPOCH_TARGET, "met": met}}


def main(argv: list[str] | None = None, runner: Runner | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    try:
        return run(args, extra, runner or run_subprocess)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, extra: list[str], runner: Runner) -> int:
    budget = quick_budget()
    args.num_samples = common.positive("num-samples", args.num_samples or budget["num_samples"])
    args.max_epochs = common.positive("max-epochs", args.max_epochs or budget["max_epochs"])
    common.positive("seeds", args.seeds)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        raise StudyError(f"--arms: use a comma list of {','.join(ARMS)}, got {args.arms!r}")
    prefix = args.name or f"search-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    results = Path(args.results).resolve()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    records = []
    for seed in seeds:  # seed by seed, so that a cut-short run has every arm at the seeds it finished
        for arm in arms:
            label, flags = ARMS[arm]
            name = f"{prefix}-{arm}-s{seed}"
            cmd = study_command(args, name, seed, flags, extra)
            log = results / f"{name}.log"
            wall = None
            if (results / name / REGIME / "best.json").is_file():
                print(f"[{arm} seed {seed}] reusing the finished study {results / name}", flush=True)
            else:
                print(f"[{arm} seed {seed}] {label}: {' '.join(cmd[1:])}\n[{arm} seed {seed}] log: {log}", flush=True)
                start = time.perf_counter()
                status = runner(cmd, log)
                wall = time.perf_counter() - start
                if status != 0:
                    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:] if log.exists() else []
                    raise StudyError(f"the {arm} study at seed {seed} failed (exit {status}); see {log}:\n"
                                     + "\n".join(tail))
            records.append({"arm": arm, "seed": seed, "label": label, "study_dir": str(results / name),
                            "command": cmd, "command_wall_s": wall, **summarize_study(results / name)})
    summary = aggregate(records)
    record = {
        "benchmark": NAME,
        "settings": {"regime": REGIME, "preset": "quick", "num_samples": args.num_samples,
                     "max_epochs": args.max_epochs, "max_train_pairs": args.max_train_pairs,
                     "data": args.data or "sample", "seeds": seeds, "arms": arms, "extra_flags": extra,
                     "name": prefix},
        "run": {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": args.argv},
        "records": records,
        "arms": summary,
        "comparison": compare(summary),
    }
    path = common.write_json(Path(args.out) if args.out else common.OUT_DIR / f"{NAME}.json", record)
    print_report(record)
    print(f"\nwrote {path}")
    return 0


def fmt_mean_sd(stat: dict, digits: int = 2) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['sd']:.{digits}f}" if stat["sd"] is not None else "")


def print_report(record: dict) -> None:
    s = record["settings"]
    print(f"\nsearch efficiency: regime {s['regime']}, quick preset, data {s['data']}, {s['num_samples']} trials x "
          f"at most {s['max_epochs']} epochs, seeds {s['seeds'][0]}..{s['seeds'][-1]} ({len(s['seeds'])})\n")
    rows = [[a["label"], len(a["seeds"]), fmt_mean_sd(a["epochs"], 1), fmt_mean_sd(a["trial_seconds"], 0),
             fmt_mean_sd(a["best_val_bleu"]), fmt_mean_sd(a["test_bleu"])] for a in record["arms"].values()]
    print(common.format_table(["arm", "seeds", "epochs", "trial-seconds", "best val BLEU", "its test BLEU"], rows))
    c = record["comparison"]
    if c:
        print(f"TPE + ASHA / random alone (means): best val BLEU {common.fmt_ratio(c['bleu_ratio'])} "
              f"(target >= {BLEU_TARGET}), epochs {common.fmt_ratio(c['epoch_ratio'])} (target <= {EPOCH_TARGET}), "
              f"trial-seconds {common.fmt_ratio(c['trial_seconds_ratio'])}: {verdict(c['targets']['met'])}")


def verdict(met: bool | None) -> str:
    return "undecided (no BLEU to compare)" if met is None else "met" if met else "not met"


if __name__ == "__main__":
    sys.exit(main())
