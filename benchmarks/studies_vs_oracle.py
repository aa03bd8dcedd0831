"""Did real studies find what the search table's oracle says is best? Each study's best trial per trained regime
against the oracle (issue 42, item 5).

    python benchmarks/studies_vs_oracle.py results/quick-seed0 results/quick-seed1 ... \
        --out docs/measurements/quick_studies_vs_oracle.json

Per study and trained regime: the configuration its search picked (lr, batch size, the width its best epoch chose),
its best trial's validation BLEU, the oracle's best configuration and mean validation BLEU over the table's seeds
(`benchmarks/replay_table.py`), whether the best trial is within 1 BLEU of it, and the picked configuration's own
mean validation BLEU in the table (its learning rate snapped to the table's grid, as the replay snaps). And per
pair of regimes the study's verdict (pairwise.csv) beside what the oracle can say on validation: ordered, level
within ±1 BLEU, or neither. Validation only decides; the table's test figures are not read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/studies_vs_oracle.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.replay_table import Table, oracle, quality  # noqa: E402
from benchmarks.search_table import DEFAULT_OUT as DEFAULT_TABLE  # noqa: E402
from study.config import StudyError  # noqa: E402

NAME = "studies_vs_oracle"
WITHIN = 1.0  # BLEU: "matches its oracle"


def compare(study: Path, table: Table, truth: dict) -> dict:
    record = json.loads((study / "study.json").read_text(encoding="utf-8"))
    regimes: dict[str, dict] = {}
    for regime in table.regimes:
        best_file = study / regime / "best.json"
        if not best_file.is_file():
            continue
        best = json.loads(best_file.read_text(encoding="utf-8"))
        o = truth["regimes"][regime]
        lr = table.snap(regime, best["lr"], best["batch_size"]) if best.get("lr") else None
        picked = quality(table, regime, lr, best["batch_size"]) if lr else None
        regimes[regime] = {
            "lr": best.get("lr"), "batch_size": best.get("batch_size"), "num_beams": best.get("num_beams"),
            "best_val_bleu": best.get("best_val_bleu"), "oracle_lr": o["lr"], "oracle_batch_size": o["batch_size"],
            "oracle_val_mean": o["val_mean"],
            "within_1_bleu": best.get("best_val_bleu") is not None and best["best_val_bleu"] >= o["val_mean"] - WITHIN,
            "picked_table_lr": lr, "picked_table_val_mean": picked["val_mean"] if picked else None,
            "picked_is_oracles": (lr, best.get("batch_size")) == (o["lr"], o["batch_size"]),
        }
    pairs = []
    pairwise = study / "pairwise.csv"
    if pairwise.is_file():
        import pandas as pd

        frame = pd.read_csv(pairwise)
        for p in truth["pairs"]:
            hit = frame[((frame["a"] == p["a"]) & (frame["b"] == p["b"])) | ((frame["a"] == p["b"]) & (frame["b"] == p["a"]))]
            if not len(hit):
                continue
            v = p["validation"]
            oracle_says = "ordered" if v["ordered"] else "level" if v["equivalent"] else "neither"
            row = hit.iloc[0]
            pairs.append({"a": row["a"], "b": row["b"], "difference": float(row["difference"]),
                          "verdict": row["verdict"], "oracle": oracle_says,
                          "oracle_order": [p["a"], p["b"]] if v["ordered"] else None})
    return {"study": study.name, "seed": record.get("seed"), "regimes": regimes, "pairs": pairs}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/studies_vs_oracle.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    p.add_argument("studies", nargs="+", type=Path, help="study folders (results/<name>)")
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="the search table (search_table.py's JSON)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/studies_vs_oracle.json)")
    return p


def run(args: argparse.Namespace) -> int:
    if not args.table.is_file():
        raise StudyError(f"no search table at {args.table}; make one with `python benchmarks/search_table.py`")
    for study in args.studies:
        if not (study / "study.json").is_file():
            raise StudyError(f"{study} is not a study folder (no study.json); pass results/<name> folders")
    table = Table(json.loads(args.table.read_text(encoding="utf-8")))
    truth = oracle(table)
    studies = [compare(s, table, truth) for s in args.studies]
    summary = {r: {"within_1_bleu": sum(s["regimes"][r]["within_1_bleu"] for s in studies if r in s["regimes"]),
                   "picked_oracles": sum(s["regimes"][r]["picked_is_oracles"] for s in studies if r in s["regimes"]),
                   "studies": sum(r in s["regimes"] for s in studies)} for r in table.regimes}
    tied_called = [(s["study"], p["a"], p["b"]) for s in studies for p in s["pairs"]
                   if p["oracle"] != "ordered" and p["verdict"] == "a finding"]
    record = {"benchmark": NAME, "table": str(args.table), "oracle": truth["regimes"], "studies": studies,
              "summary": summary, "findings_the_oracle_cannot_order": tied_called,
              **common.run_info(args, "cpu")}
    return common.finish(args, NAME, record, print_report)


def print_report(record: dict) -> None:
    rows = []
    for s in record["studies"]:
        for r, v in s["regimes"].items():
            rows.append([s["study"], r, f"{v['lr']:.3g}", v["batch_size"], v["num_beams"], v["best_val_bleu"],
                         v["oracle_val_mean"], "yes" if v["within_1_bleu"] else "no", v["picked_table_val_mean"]])
    print(common.format_table(["study", "regime", "lr", "batch", "beams", "best val", "oracle val", "within 1",
                               "picked's table val"], rows))
    for r, v in record["summary"].items():
        print(f"{r}: within 1 BLEU of the oracle in {v['within_1_bleu']} of {v['studies']} studies; "
              f"the oracle's configuration picked in {v['picked_oracles']}")
    print("findings on pairs the oracle cannot order on validation: "
          + (", ".join(f"{s}: {a} vs {b}" for s, a, b in record["findings_the_oracle_cannot_order"]) or "none"))


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
