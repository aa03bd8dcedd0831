"""What every command line of the study shares: its argument parser and its one-line errors.

Every CLI (`study.run`, `study.trial`, `study.pretrain`, `study.analyze`, `study.translate`,
`study.evaluate`) builds its parser with `ArgumentParser` and runs its body through `run_cli`, so bad input
always ends the same way: one `error: ...` line on stderr saying what is wrong and what to do, and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from study.config import StudyError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a short failure: the usage line and the error, not the whole flag list."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"usage: {self.prog} [options] (see {self.prog} --help)\nerror: {message}\n")


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a CLI's body; a StudyError becomes one `error:` line and exit status 2."""
    try:
        return body() or 0
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
