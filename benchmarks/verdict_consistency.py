"""Do a study's verdicts hold when it is run again? Findings across several runs of the same study.

    python benchmarks/verdict_consistency.py results/quick-s0 results/quick-s1 results/quick-s2 ...

Each folder is a finished study (say the quick study at `--seed 0..4`) that `python -m study.analyze` has
analysed: this reads its `pairwise.csv` only. For every pair of regimes and every ordered pair of runs
(i, j), i ≠ j, where run i calls the pair a finding (x beats y), run j either confirms it (a finding, x
beats y), **reverses** it (a finding, y beats x), leaves it **inconclusive**, or lacks the pair. The rates
are over those (i, j) occurrences; the goal (issue 30) is at most 5 % reversed. The same figures are given
for the sentence-only test of the two best models (pairwise.csv's `p_best_models_sentences` below 0.05,
unadjusted, the direction of `best_models_difference`): what the report called a finding before seeds
entered the test, for contrast. JSON: benchmarks/out/verdict_consistency.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run as `python benchmarks/verdict_consistency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.analysis.conclusions import ALPHA, FINDING  # noqa: E402
from study.config import StudyError  # noqa: E402

GOAL = 0.05  # at most this share of findings reversed in another run
KINDS = {"seeded": "seeds and sources, Holm-adjusted (the verdict)",
         "sentences": "sentence-only, best models, unadjusted"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("studies", nargs="+", type=Path, help="finished, analysed study folders (two or more)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/verdict_consistency.json)")
    return p


def read_pairwise(study: Path) -> pd.DataFrame:
    path = study / "pairwise.csv"
    if not path.is_file():
        raise StudyError(f"{study} has no pairwise.csv: analyse it first (python -m study.analyze {study}), with "
                         "this version")
    table = pd.read_csv(path)
    needed = {"a", "b", "verdict", "p_best_models_sentences", "best_models_difference"}
    if not needed <= set(table.columns):
        raise StudyError(f"{path} lacks {sorted(needed - set(table.columns))}: re-run python -m study.analyze {study}")
    return table


def calls(table: pd.DataFrame, kind: str) -> dict[frozenset, str | None]:
    """Each pair of regimes -> the winner its test calls (a finding), or None (inconclusive)."""
    out: dict[frozenset, str | None] = {}
    for _, r in table.iterrows():
        if kind == "seeded":
            winner = r["a"] if r["verdict"] == FINDING else None
        else:
            significant = r["p_best_models_sentences"] < ALPHA and r["best_models_difference"] != 0
            winner = (r["a"] if r["best_models_difference"] > 0 else r["b"]) if significant else None
        out[frozenset((r["a"], r["b"]))] = winner
    return out


def consistency(tables: dict[str, pd.DataFrame], kind: str = "seeded") -> dict:
    """The rates of `kind`'s findings confirmed, reversed, inconclusive or missing in the other runs."""
    if len(tables) < 2:
        raise StudyError(f"consistency needs two or more studies, got {len(tables)}")
    called = {name: calls(t, kind) for name, t in tables.items()}
    counts = {"confirmed": 0, "reversed": 0, "inconclusive": 0, "missing": 0}
    pairs: dict[str, dict[str, str]] = {}
    for name, verdicts in called.items():
        for pair, winner in verdicts.items():
            x, y = sorted(pair)
            pairs.setdefault(f"{x} vs {y}", {})[name] = "inconclusive" if winner is None else f"{winner} better"
            if winner is None:
                continue
            for other, theirs in called.items():
                if other == name:
                    continue
                seen = theirs.get(pair, "missing")
                counts["missing" if seen == "missing" else "inconclusive" if seen is None else
                       "confirmed" if seen == winner else "reversed"] += 1
    occurrences = sum(counts.values())
    findings = sum(w is not None for v in called.values() for w in v.values())
    total = sum(len(v) for v in called.values())
    return {"kind": kind, "studies": list(tables), "findings": findings, "pair_verdicts": total,
            "occurrences": occurrences, **counts,
            "rates": {k: (v / occurrences if occurrences else None) for k, v in counts.items()},
            "goal_met": (counts["reversed"] / occurrences <= GOAL) if occurrences else None, "pairs": pairs}


def run(args: argparse.Namespace) -> int:
    tables = {str(s): read_pairwise(s) for s in args.studies}
    record = {"benchmark": "verdict_consistency", "goal_reversed_at_most": GOAL,
              "results": {kind: consistency(tables, kind) for kind in KINDS}}
    return common.finish(args, "verdict_consistency", record, print_report)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_report(record: dict) -> None:
    results = record["results"]
    rows = [[KINDS[k], f"{r['findings']} of {r['pair_verdicts']}", r["occurrences"], _rate(r["rates"]["confirmed"]),
             _rate(r["rates"]["reversed"]), _rate(r["rates"]["inconclusive"]), _rate(r["rates"]["missing"]),
             "-" if r["goal_met"] is None else "met" if r["goal_met"] else "not met"]
            for k, r in results.items()]
    print(f"\n{len(results['seeded']['studies'])} runs of the study; each finding of one run, read in every other run:")
    print(common.format_table(["test", "findings", "(finding, other run)", "confirmed", "reversed", "inconclusive",
                               "missing", f"reversed ≤ {GOAL:.0%}"], rows))
    pairs = results["seeded"]["pairs"]
    studies = results["seeded"]["studies"]
    print("\nthe verdicts, run by run:")
    print(common.format_table(["pair", *[Path(s).name for s in studies]],
                              [[p, *[v.get(s, "-") for s in studies]] for p, v in pairs.items()]))


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
