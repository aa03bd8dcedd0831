"""Where a study's trial slots went: every trial epoch's busy interval, and the stretches with a slot free.

    python benchmarks/slot_timeline.py results/quick-<timestamp> [--slots 2] [--gap 3]

Tune records each epoch a trial reports with its end (`timestamp`, whole seconds) and its length
(`time_this_iter_s`: training and validation): an interval on the study's clock. From the first epoch's start
to the last one's end, the epochs running at once are the slots in use; slots x that span, less the epochs'
own seconds, is what the trials left unused: worker processes starting (each Tune experiment starts its own,
~8-10 s of imports on a 2-core machine), test scoring tasks, the upstream's pretraining beside the searches,
and slots nobody had work for. Listed: every stretch of at least `--gap` seconds with a slot free, and what
ran meanwhile. study.json's `timings` give the same trial seconds as one share; this shows *when*.
JSON: benchmarks/out/slot_timeline.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/slot_timeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import StudyError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/slot_timeline.py", description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path, help="a study folder (results/<name>)")
    p.add_argument("--slots", type=int, default=0, help="trial slots (default: study.json's timings.slots, else 2)")
    p.add_argument("--gap", type=float, default=3.0, help="list stretches with a slot free this long or longer (s)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/slot_timeline.json)")
    return p


def read_epochs(study: Path) -> list[dict]:
    """Every epoch any trial of the study reported: its start and end on the study's clock (s), its experiment
    (`<regime>` or `<regime>/seeds`) and trial folder."""
    files = sorted(study.glob("**/trial_*/result.json"))
    if not files:
        raise StudyError(f"{study} holds no trial results (<regime>/trial_*/result.json): pass a study folder")
    epochs = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("timestamp") is None or row.get("time_this_iter_s") is None:
                continue
            end = float(row["timestamp"])
            epochs.append({"start": end - float(row["time_this_iter_s"]), "end": end,
                           "experiment": path.parent.parent.relative_to(study).as_posix(),
                           "trial": path.parent.name, "epoch": row.get("epoch")})
    if not epochs:
        raise StudyError(f"{study}'s trials reported no timed epoch")
    origin = min(e["start"] for e in epochs)
    for e in epochs:
        e["start"], e["end"] = e["start"] - origin, e["end"] - origin
    return sorted(epochs, key=lambda e: e["start"])


def slot_use(epochs: list[dict], slots: int, gap: float) -> dict:
    """Busy and free slot-seconds from the first epoch's start to the last one's end, and the stretches of at
    least `gap` seconds in which fewer than `slots` epochs ran: their free slot-seconds and the experiments that
    ran then."""
    bounds = sorted({e["start"] for e in epochs} | {e["end"] for e in epochs})
    stretches: list[dict] = []
    free = 0.0
    for a, b in zip(bounds, bounds[1:]):
        running = [e for e in epochs if e["start"] < b and e["end"] > a]
        unused = max(0, slots - len(running)) * (b - a)
        free += unused
        if not unused:
            continue
        names = sorted({e["experiment"] for e in running})
        last = stretches[-1] if stretches else None
        if last and last["end"] == a:
            last["end"], last["free_slot_seconds"] = b, last["free_slot_seconds"] + unused
            last["running"] = sorted(set(last["running"]) | set(names))
        else:
            stretches.append({"start": a, "end": b, "free_slot_seconds": unused, "running": names})
    span = bounds[-1] - bounds[0]
    busy = sum(e["end"] - e["start"] for e in epochs)
    return {"slots": slots, "span_s": span, "epoch_seconds": busy, "free_slot_seconds": free,
            "busy_share": busy / (slots * span) if span else None,
            "stretches": [s | {"seconds": s["end"] - s["start"]} for s in stretches if s["end"] - s["start"] >= gap]}


def by_experiment(epochs: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for e in epochs:
        row = out.setdefault(e["experiment"], {"experiment": e["experiment"], "first_start": e["start"],
                                               "last_end": e["end"], "epochs": 0, "epoch_seconds": 0.0})
        row["first_start"], row["last_end"] = min(row["first_start"], e["start"]), max(row["last_end"], e["end"])
        row["epochs"] += 1
        row["epoch_seconds"] += e["end"] - e["start"]
    return sorted(out.values(), key=lambda r: r["first_start"])


def run(args: argparse.Namespace) -> int:
    if args.gap < 0 or args.slots < 0:
        raise StudyError("--gap and --slots must be 0 or more")
    epochs = read_epochs(args.study)
    slots = args.slots
    if not slots:
        saved = args.study / "study.json"
        timings = json.loads(saved.read_text(encoding="utf-8")).get("timings") or {} if saved.is_file() else {}
        slots = int(timings.get("slots") or 2)
    record = {"benchmark": "slot_timeline", "study": str(args.study), **slot_use(epochs, slots, args.gap),
              "experiments": by_experiment(epochs), "epochs": epochs}
    return common.finish(args, "slot_timeline", record, print_report)


def print_report(record: dict) -> None:
    print(f"\n{record['study']}: {record['slots']} slots over {record['span_s']:.0f} s from the first epoch's start "
          f"to the last one's end; epochs ran {record['epoch_seconds']:.0f} slot-s "
          f"({record['busy_share']:.0%}), {record['free_slot_seconds']:.0f} slot-s free")
    print(common.format_table(["experiment", "first start (s)", "last end (s)", "epochs", "epoch seconds"],
                              [[r["experiment"], f"{r['first_start']:.0f}", f"{r['last_end']:.0f}", r["epochs"],
                                f"{r['epoch_seconds']:.0f}"] for r in record["experiments"]]))
    print("\nstretches with a slot free:")
    print(common.format_table(["from (s)", "to (s)", "seconds", "free slot-s", "what ran"],
                              [[f"{s['start']:.0f}", f"{s['end']:.0f}", f"{s['seconds']:.0f}",
                                f"{s['free_slot_seconds']:.0f}",
                                ", ".join(s["running"]) or "-"] for s in record["stretches"]]))


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
