"""Progress a user can see inside long epochs and long evaluations, without slowing them.

    with Progress(total=len(loader), desc="epoch 1/3 train") as bar:
        for batch in loader:
            ...
            bar.update(loss=mean_loss)

What is shown depends on where the code runs (`mode()`):
- `bar`: a tqdm bar on a terminal (steps, steps/s, ETA, the current mean loss), redrawn at most 4x a second;
- `lines`: one plain line at every ~10 % when output is not a terminal (a log file, CI) or is a terminal
  that reports no width (some containers and `script` sessions, where tqdm would draw nothing), same figures;
- `ray`: inside a Ray trial or task, `ray.experimental.tqdm_ray`: the bar is drawn by the driver, next to
  every other trial's, from an update each trial sends at most once a second;
- `off`: nothing (`python -m study.trial --no-progress`).
`set_mode` (a CLI flag) or the `T5STUDY_PROGRESS` environment variable choose one (a local Ray cluster's
workers inherit the variable from the driver); otherwise `auto`: `ray` where code that runs in a Ray worker
said so (`running_in_ray`), else `bar` on a terminal and `lines` elsewhere. A driver whose own output is
not a usable terminal hands `lines` to its Ray workers (`for_workers`): `tqdm_ray`'s bars would reach its log
as carriage-return frames.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm import tqdm

MODES = ("auto", "bar", "lines", "ray", "off")
ENV = "T5STUDY_PROGRESS"
# The figures of both the bar and the lines: what a user needs to tell a slow run from a hung one.
FIGURES = "{n_fmt}/{total_fmt} {unit} [{elapsed}, ETA {remaining}, {rate_fmt}{postfix}]"
_chosen: str | None = None  # set_mode's choice
_ray_label: str | None = None  # set by running_in_ray: this process is a Ray worker; bars are labelled so


def set_mode(mode: str) -> None:
    """Choose how progress shows in this process (overrides the environment variable; `auto` undoes a choice)."""
    global _chosen
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    _chosen = None if mode == "auto" else mode


def running_in_ray(label: str) -> None:
    """Called by code that runs in a Ray worker (a trial, a test-scoring task): unless a mode was chosen, its
    bars go to the driver, each labelled (`label`: the trial's name, the regime) to tell them apart."""
    global _ray_label
    _ray_label = label


def _usable_terminal() -> bool:
    """stderr is a terminal that reports a width (a width of 0 makes tqdm draw nothing at all)."""
    if not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


def mode() -> str:
    chosen = _chosen or os.environ.get(ENV, "auto")
    if chosen != "auto":
        return chosen
    if _ray_label is not None:
        return "ray"
    return "bar" if _usable_terminal() else "lines"


def for_workers() -> dict[str, str]:
    """Environment variables for the Ray workers of a driver in this process: `lines` when the driver's output
    is not a usable terminal (and nothing was chosen), so that trials print plain lines into its log."""
    chosen = _chosen or os.environ.get(ENV, "auto")
    if chosen != "auto":
        return {ENV: chosen}
    return {} if _usable_terminal() else {ENV: "lines"}


class Progress:
    """Progress over `total` steps of one loop; `update(n, loss=...)` after each step."""

    def __init__(self, total: int, desc: str, unit: str = "step") -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.mode = mode() if total > 0 else "off"
        self._start = time.perf_counter()
        self._next_line = 0.1  # the fraction done at which `lines` writes its next line
        self._bar: Any = None
        if self.mode == "bar":
            self._bar = tqdm(total=total, desc=desc, unit=unit, mininterval=0.25, dynamic_ncols=True, leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| " + FIGURES)
        elif self.mode == "ray":
            from ray.experimental import tqdm_ray

            self.desc = f"{_ray_label} {desc}" if _ray_label else desc
            self._bar = tqdm_ray.tqdm(total=total, desc=self.desc, unit=unit)

    def update(self, n: int = 1, loss: float | None = None) -> None:
        self.n += n
        if self.mode == "bar":
            if loss is not None:
                self._bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
            self._bar.update(n)
        elif self.mode == "ray":
            self._bar.update(n)
            if loss is not None:  # tqdm_ray has no postfix; it sends its state at most once a second anyway
                self._bar.set_description(f"{self.desc} loss {loss:.3f}")
        elif self.mode == "lines" and self.n >= self._next_line * self.total:
            self._next_line = (int(10 * self.n / self.total) + 1) / 10
            postfix = f"loss {loss:.3f}" if loss is not None else None
            print(tqdm.format_meter(self.n, self.total, time.perf_counter() - self._start, prefix=self.desc,
                                    unit=self.unit, postfix=postfix,
                                    bar_format="{desc}: {percentage:3.0f}% " + FIGURES),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            if self.mode == "bar":
                # tqdm draws at most every mininterval: a loop shorter than that would end on its first,
                # empty frame. Draw the final state once (steps, rate, loss) before the bar is cleared.
                self._bar.refresh()
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
