"""`python -m study.run --replicates K`: K studies at seeds s, s+1, ..., s+K−1 (s = --seed), then the verdict
across them (`study.analysis.cross_study`).

    python -m study.run --regime all --replicates 5 --name quick      # results/quick-seed0 ... quick-seed4,
                                                                      # then results/quick-replicates/

Each replicate is a normal study, run by the very function a single `python -m study.run` runs, with its own
folder (`<name>-seed<N>`), search, tiny upstream (pretrained per seed) and seed runs; only `--seed` differs,
so the spread between them is what a claim about the regimes must beat. They run one after another in one
driver and one Ray: each study already fills the cluster's trial slots with its own trials (and its regimes
side by side), so a second study beside it would only queue for the same slots. Then `python -m study.analyze`
over the K studies writes the cross-study table, report and cross_study_pairwise.csv into `<name>-replicates/`
beside them (for --results at a URI: in the current folder).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from study.config import StudyError
from study.results.storage import StudyLocation, is_uri


def check(args: argparse.Namespace) -> None:
    """Refuse the combinations --replicates cannot run, in one line, before anything starts."""
    if args.replicates < 1:
        raise StudyError(f"--replicates K runs K >= 1 studies at seeds --seed, --seed+1, ...; got {args.replicates}")
    if args.resume:
        raise StudyError(f"--replicates starts new studies; it cannot --resume {args.resume}: resume each "
                         f"unfinished replicate by its own name (<name>-seed<N>), then run python -m study.analyze "
                         f"over them")


def plan(args: argparse.Namespace, base_seed: int) -> tuple[list[tuple[str, int]], str, Path]:
    """([(study name, seed)] of each replicate, the replicate set's name, where the verdict across them goes)."""
    base = args.name or f"{args.preset}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    runs = [(f"{base}-seed{seed}", seed) for seed in range(base_seed, base_seed + args.replicates)]
    root = Path(args.results).expanduser()
    out = Path(f"{base}-replicates") if is_uri(args.results) else root / f"{base}-replicates"
    return runs, base, out


def run_replicates(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int], base_seed: int,
                   cache_dir: str) -> int:
    """Run the replicates one after another with `run_one` (study.run's own study), then the analysis across
    them. Every replicate's folder and the verdict's folder are checked free before the first starts."""
    runs, base, out = plan(args, base_seed)
    locations = [StudyLocation(args.results, name, cache_dir) for name, _ in runs]
    for where in locations:
        if where.exists() or (where.remote is None and where.local.exists()):
            raise StudyError(f"{where.describe()} exists already; pick another --name for the replicates "
                             f"(they are named <name>-seed<N>)")
    if out.exists():
        raise StudyError(f"{out} exists already; pick another --name for the replicates")
    for k, (name, seed) in enumerate(runs, start=1):
        print(f"\n=== replicate {k} of {len(runs)}: study {name} at --seed {seed} ===", flush=True)
        one = copy.copy(args)
        one.name, one.seed, one.replicates = name, seed, None
        code = run_one(one)
        if code != 0:
            done = ", ".join(n for n, _ in runs[:k - 1]) or "none"
            print(f"\nreplicate {name} stopped (exit {code}); finished before it: {done}. Resume it with "
                  f"--resume {name}, run the rest with --seed and --name, then python -m study.analyze over them.",
                  flush=True)
            return code
    studies = [where.describe() for where in locations]
    if len(studies) < 2:
        print(f"\none replicate: a verdict across studies needs at least two (a finding three); {studies[0]} "
              f"holds this study's own verdict", flush=True)
        return 0
    from study import analyze
    from study.analysis.cross_study import FILE

    print(f"\n=== the verdict across the {len(studies)} replicates of {base} ===", flush=True)
    code = analyze.main([*studies, "--out", str(out)])
    if code == 0:
        print(f"\ncross-study verdict: {out / FILE} (report: {out / 'cross_study.md'})", flush=True)
    return code
