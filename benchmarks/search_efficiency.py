"""Search efficiency: Optuna (TPE) + ASHA vs random search without pruning, at the same number of trials.

    python benchmarks/search_efficiency.py --num-samples 8 --max-epochs 4 --max-train-pairs 2000
    python benchmarks/search_efficiency.py --name mine            # a rerun reuses finished studies of that name

Runs the study twice on the quick preset (tiny model, bundled corpus unless `--data`), regime `scratch`, each
as `python -m study.run --regime scratch --preset quick ...` in a subprocess with the same seed, search
space (search_spaces/scratch.yaml), trial count and epoch budget:

  asha    - the study as it is: Optuna's TPE sampler + ASHA (grace period and reduction factor from the YAML);
  random  - `--searcher random --scheduler none`: Optuna's RandomSampler, no scheduler (every trial runs
            every epoch). If `study.run` does not have those flags yet, the arm falls back to the same TPE
            searcher with ASHA's grace period set to the epoch budget, which never stops a trial ("TPE, no
            pruning"); the table says which. Note that TPE samples at random for its first 10 trials
            (n_startup_trials), so with 10 trials or fewer both arms draw alike and the comparison isolates
            what pruning saves.

Reads `<results>/<name>/scratch/*/result.json` (one line per epoch a trial ran) and `best.json`, and reports
per arm: trials, epochs consumed, trial-seconds (the sum of every trial's own time), the search's wall time,
the whole command's wall time, the best validation BLEU and that trial's test BLEU. Target: ASHA reaches at
least 95 % of random search's best val BLEU with at most 50 % of its epochs. Any other flag is passed to both
`study.run` commands (e.g. `--tiny-d-model 64 --max-eval-pairs 100`). JSON goes to
benchmarks/out/search_efficiency.json; the studies (and a log of each command) to benchmarks/out/search/.
"""

from __future__ import annotations

import argparse
import json
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
BLEU_TARGET, EPOCH_TARGET = 0.95, 0.5
ARMS = {"asha": "Optuna TPE + ASHA", "random": "random search, no pruning"}
FALLBACK_LABEL = "TPE, no pruning (ASHA grace = max epochs)"

# runner(command, log_file) -> exit status; the default runs it in a subprocess from the repository root.
Runner = Callable[[list[str], Path], int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/search_efficiency.py", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--num-samples", type=int, default=8, help="trials per arm (default 8)")
    p.add_argument("--max-epochs", type=int, default=4, help="epochs of a trial that is never stopped (default 4)")
    p.add_argument("--max-train-pairs", type=int, help="training pairs per trial (default: the quick preset's 4000)")
    p.add_argument("--data", help="pairs (default: the quick preset's bundled corpus)")
    p.add_argument("--seed", type=int, default=0, help="seed of both studies (searcher, init, batch order)")
    p.add_argument("--cache-dir", help="the study's cache (default: its own default)")
    p.add_argument("--results", type=Path, default=common.OUT_DIR / "search", help="where the two studies go")
    p.add_argument("--name", help="prefix of the two study names (default search-<UTC time>); finished studies "
                                  "of that name are reused, not rerun")
    p.add_argument("--arms", default="asha,random", help="comma list of asha,random (default both)")
    p.add_argument("--random-mode", default="auto", choices=("auto", "flags", "no-pruning"),
                   help="random arm: study.run's --searcher random --scheduler none (flags), TPE with no pruning "
                        "(no-pruning), or flags when study.run has them (auto, default)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/search_efficiency.json)")
    return p


def study_run_has(*flags: str) -> bool:
    """Whether `python -m study.run` accepts every one of `flags`."""
    from study.run import build_parser as study_parser

    known = study_parser()._option_string_actions
    return all(flag in known for flag in flags)


def random_arm(mode: str, max_epochs: int) -> tuple[list[str], str]:
    """The flags that make the random arm, and what that arm really is."""
    supported = study_run_has("--searcher", "--scheduler")
    if mode == "flags" and not supported:
        raise StudyError("python -m study.run has no --searcher/--scheduler flags yet; "
                         "use --random-mode no-pruning (TPE without pruning) or add the flags")
    if mode == "flags" or (mode == "auto" and supported):
        return ["--searcher", "random", "--scheduler", "none"], "random search (Optuna RandomSampler), no pruning"
    return ["--grace-period", str(max_epochs)], FALLBACK_LABEL


def study_command(args: argparse.Namespace, name: str, extra: list[str], arm_flags: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "study.run", "--regime", REGIME, "--preset", "quick",
           "--num-samples", str(args.num_samples), "--max-epochs", str(args.max_epochs),
           "--results", str(Path(args.results).resolve()), "--name", name, "--seed", str(args.seed), "--no-analysis"]
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
    best = json.loads(best_file.read_text(encoding="utf-8")) if best_file.is_file() else {}
    scored = [t["best_val_bleu"] for t in trials if t["best_val_bleu"] is not None]
    record_file = study_dir / "study.json"
    budget = json.loads(record_file.read_text(encoding="utf-8")).get("budget", {}) if record_file.is_file() else {}
    return {"trials": len(trials), "epochs": sum(t["epochs"] for t in trials),
            "epochs_per_trial": [t["epochs"] for t in trials],
            "trial_seconds": sum(t["seconds"] for t in trials),
            "best_val_bleu": max(scored, default=None), "best_json_val_bleu": best.get("best_val_bleu"),
            "test_bleu": best.get("test_bleu"), "search_wall_s": best.get("search_wall_s"),
            "pruned": best.get("pruned"), "best_trial": {k: best.get(k) for k in ("lr", "batch_size", "num_beams")},
            "budget": budget, "per_trial": trials}


def compare(arms: dict[str, dict]) -> dict:
    if "asha" not in arms or "random" not in arms:
        return {}
    a, r = arms["asha"], arms["random"]
    bleu = common.ratio(a["best_val_bleu"] or 0.0, r["best_val_bleu"] or 0.0)
    epochs = common.ratio(a["epochs"], r["epochs"])
    return {"bleu_ratio": bleu, "epoch_ratio": epochs,
            "trial_seconds_ratio": common.ratio(a["trial_seconds"], r["trial_seconds"]),
            "search_wall_ratio": common.ratio(a.get("search_wall_s") or 0.0, r.get("search_wall_s") or 0.0),
            "targets": {"bleu_ratio_at_least": BLEU_TARGET, "epoch_ratio_at_most": EPOCH_TARGET,
                        "met": None if bleu is None or epochs is None else bleu >= BLEU_TARGET and epochs <= EPOCH_TARGET}}


def main(argv: list[str] | None = None, runner: Runner | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    try:
        return run(args, extra, runner or run_subprocess)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, extra: list[str], runner: Runner) -> int:
    common.positive("num-samples", args.num_samples)
    common.positive("max-epochs", args.max_epochs)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        raise StudyError(f"--arms: use a comma list of {','.join(ARMS)}, got {args.arms!r}")
    prefix = args.name or f"search-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    results = Path(args.results).resolve()
    summaries: dict[str, dict] = {}
    for arm in arms:
        flags, label = ([], ARMS["asha"]) if arm == "asha" else random_arm(args.random_mode, args.max_epochs)
        name = f"{prefix}-{arm}"
        cmd = study_command(args, name, extra, flags)
        log = results / f"{name}.log"
        wall = None
        if (results / name / REGIME / "best.json").is_file():
            print(f"[{arm}] reusing the finished study {results / name}", flush=True)
        else:
            print(f"[{arm}] {label}: {' '.join(cmd[1:])}\n[{arm}] log: {log}", flush=True)
            start = time.perf_counter()
            status = runner(cmd, log)
            wall = time.perf_counter() - start
            if status != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:] if log.exists() else []
                raise StudyError(f"the {arm} study failed (exit {status}); see {log}:\n" + "\n".join(tail))
        summaries[arm] = {"label": label, "study_dir": str(results / name), "command": cmd, "command_wall_s": wall,
                          **summarize_study(results / name)}
    record = {
        "benchmark": NAME,
        "settings": {"regime": REGIME, "preset": "quick", "num_samples": args.num_samples,
                     "max_epochs": args.max_epochs, "max_train_pairs": args.max_train_pairs, "data": args.data or "sample",
                     "seed": args.seed, "extra_flags": extra, "name": prefix},
        "run": {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": args.argv},
        "arms": summaries,
        "comparison": compare(summaries),
    }
    path = common.write_json(Path(args.out) if args.out else common.OUT_DIR / f"{NAME}.json", record)
    print_report(record)
    print(f"\nwrote {path}")
    return 0


def print_report(record: dict) -> None:
    s = record["settings"]
    print(f"\nsearch efficiency: regime {s['regime']}, quick preset, data {s['data']}, {s['num_samples']} trials x "
          f"at most {s['max_epochs']} epochs, seed {s['seed']}\n")
    rows = [[a["label"], a["trials"], a["epochs"], a["trial_seconds"], a["search_wall_s"], a["command_wall_s"],
             a["best_val_bleu"], a["test_bleu"]] for a in record["arms"].values()]
    print(common.format_table(["arm", "trials", "epochs", "trial-seconds", "search wall s", "command wall s",
                               "best val BLEU", "its test BLEU"], rows))
    c = record["comparison"]
    if c:
        print(f"ASHA / random: best val BLEU {common.fmt_ratio(c['bleu_ratio'])} (target >= {BLEU_TARGET}), epochs "
              f"{common.fmt_ratio(c['epoch_ratio'])} (target <= {EPOCH_TARGET}), trial-seconds "
              f"{common.fmt_ratio(c['trial_seconds_ratio'])}: {verdict(c['targets']['met'])}")


def verdict(met: bool | None) -> str:
    return "undecided (no BLEU to compare)" if met is None else "met" if met else "not met"


if __name__ == "__main__":
    sys.exit(main())
