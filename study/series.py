"""Several studies run one after another by study.run's own function, then one analysis over them: the
machinery `--replicates K` (study/replicates.py: the same study at K seeds) and the data sweep
(study/sweep.py: the same study at several --max-train-pairs) share.

Each member is a normal study with its own folder, run by the very function a single `python -m study.run`
runs, with only a few flags changed; its study.json records the series it belongs to (`series`). They run
one after another in one driver and one Ray: each study already fills the cluster's trial slots with its own
trials (its regimes side by side, study/pipeline.py), so a second study beside it would mostly queue for the
same slots, and two drivers' Ctrl-C handling and progress output would interleave.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from study.config import StudyError
from study.outputs.storage import StudyLocation, is_uri


@dataclass(frozen=True)
class Member:
    name: str  # the study's --name
    flags: dict  # the command's flags this study sets otherwise (attribute -> value)
    title: str  # its progress line, e.g. "replicate 1 of 3: study q-seed5 at --seed 5"
    record: dict = field(default_factory=dict)  # this member's own part of study.json's `series`


def base_name(args: argparse.Namespace) -> str:
    """The series' name: --name, else the preset and the time, as a single study's default name."""
    return args.name or f"{args.preset}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def out_folder(args: argparse.Namespace, folder: str) -> Path:
    """Where the analysis over the series goes: beside the studies (for --results at a URI: here)."""
    return Path(folder) if is_uri(args.results) else Path(args.results).expanduser() / folder


def run_series(args: argparse.Namespace, members: list[Member], out: Path, run_one: Callable[[argparse.Namespace], int],
               cache_dir: str, series: dict, rest: Callable[[list[str]], str]) -> tuple[int, list[str]]:
    """Run `members` one after another with `run_one` (study.run's own study); every member's folder and `out`
    are checked free before the first starts. Each study.json gets `series` (plus the member's `record`) as its
    `series`. Returns (exit code, each finished study's folder or URI); on a member's failure, the code and a
    line saying what finished and, from `rest(names of the members not finished)`, how to go on."""
    where = [StudyLocation(args.results, m.name, cache_dir) for m in members]
    kind = series["kind"]
    for place in where:
        if place.exists() or (place.remote is None and place.local.exists()):
            raise StudyError(f"{place.describe()} exists already; pick another --name for the {kind}")
    if out.exists():
        raise StudyError(f"{out} exists already; pick another --name for the {kind}")
    for k, member in enumerate(members, start=1):
        print(f"\n=== {member.title} ===", flush=True)
        one = copy.copy(args)
        for flag, value in {"name": member.name, "replicates": None, **member.flags}.items():
            setattr(one, flag, value)
        one.series = {**series, "studies": [m.name for m in members], **member.record}
        code = run_one(one)
        if code != 0:
            done = ", ".join(m.name for m in members[:k - 1]) or "none"
            print(f"\n{member.name} stopped (exit {code}); finished before it: {done}. Resume it with --resume "
                  f"{member.name}; {rest([m.name for m in members[k - 1:]])}", flush=True)
            return code, []
    return 0, [place.describe() for place in where]
