"""`python -m study.run --replicates K`: K studies at seeds s, s+1, ..., s+K−1 (s = --seed), then the verdict
across them (`study.analysis.cross_study`).

    python -m study.run --regime all --replicates 5 --name quick      # results/quick-seed0 ... quick-seed4,
                                                                      # then results/quick-replicates/

Each replicate is a normal study (run by study/series.py, the machinery the data sweep shares), with its own
folder (`<name>-seed<N>`), search, tiny upstream (pretrained per seed) and seed runs; only `--seed` differs,
so the spread between them is what a claim about the regimes must beat. They run one after another in one
driver and one Ray (study/series.py says why). Then `python -m study.analyze` over the K studies writes the
cross-study table, report and cross_study_pairwise.csv into `<name>-replicates/` beside them (for --results
at a URI: in the current folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from study import series
from study.config import StudyError


def check(args: argparse.Namespace) -> None:
    """Refuse the combinations --replicates cannot run, in one line, before anything starts."""
    if args.replicates < 1:
        raise StudyError(f"--replicates K runs K >= 1 studies at seeds --seed, --seed+1, ...; got {args.replicates}")
    if args.resume:
        raise StudyError(f"--replicates starts new studies; it cannot --resume {args.resume}: resume each "
                         f"unfinished replicate by its own name (<name>-seed<N>), then run python -m study.analyze "
                         f"over them")


def plan(args: argparse.Namespace, base_seed: int) -> tuple[list[series.Member], str, Path]:
    """(each replicate, the replicate set's name, where the verdict across them goes)."""
    base = series.base_name(args)
    seeds = range(base_seed, base_seed + args.replicates)
    runs = [series.Member(f"{base}-seed{seed}", {"seed": seed}, f"replicate {k} of {len(seeds)}: study "
                          f"{base}-seed{seed} at --seed {seed}", {"seed": seed}) for k, seed in enumerate(seeds, 1)]
    return runs, base, series.out_folder(args, f"{base}-replicates")


def run_replicates(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int], base_seed: int,
                   cache_dir: str) -> int:
    """Run the replicates one after another with `run_one` (study.run's own study), then the analysis across
    them. Every replicate's folder and the verdict's folder are checked free before the first starts."""
    runs, base, out = plan(args, base_seed)
    code, studies = series.run_series(
        args, runs, out, run_one, cache_dir, {"kind": "replicates", "name": base},
        lambda left: f"run the rest ({', '.join(left[1:]) or 'none'}) with --seed and --name, then "
                     f"python -m study.analyze over them.")
    if code != 0:
        return code
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
