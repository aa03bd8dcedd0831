"""A regime's best trial: ranked by its *best* epoch's validation BLEU (scope "all"), never by test.

The checkpoint returned is that epoch's (Tune keeps each trial's best checkpoints by validation BLEU),
so the model scored on test is exactly the one selection chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.config import StudyError
from study.tuning.searcher import METRIC, MODE
from study.tuning.trials import ended_as


@dataclass
class BestTrial:
    result: Any  # ray.tune.Result of the best trial
    params: dict  # its sampled hyperparameters
    best_epoch: int  # the epoch with its best validation BLEU
    best_val_bleu: float
    checkpoint: Any  # ray.tune.Checkpoint of that epoch, or None (a regime that trains nothing)


def best_trial(grid, regime: str, study_dir: Path) -> BestTrial:
    """The trial of `grid` whose best epoch scored the highest validation BLEU, and that epoch's checkpoint."""
    scored = [r for r in grid if r.metrics and METRIC in r.metrics]
    if not scored:
        first = next((r.error for r in grid if r.error), None)
        raise StudyError(f"no trial of {regime} reported a score ({len(grid)} trial(s), "
                         f"first error: {str(first).strip().splitlines()[-1] if first else 'none'}); "
                         f"see {study_dir / regime} and fix the cause, then resume")
    best = grid.get_best_result(metric=METRIC, mode=MODE, scope="all")
    history = best.metrics_dataframe
    row = history.loc[history[METRIC].idxmax()]
    checkpoint = best.get_best_checkpoint(METRIC, MODE) if best.best_checkpoints else None
    return BestTrial(best, chosen_params(best.config, row), int(row["epoch"]), float(row[METRIC]), checkpoint)


def chosen_params(config: dict, row) -> dict:
    """A trial's hyperparameters as chosen at epoch `row`: its sampled ones, and the beam width that decoded that
    epoch's checkpoint best when every width was scored (`num_beams_best`; the space's `beams: per_checkpoint`)."""
    params = dict(config)
    width = row.get("num_beams_best") if hasattr(row, "get") else None
    if width is not None and width == width:  # not NaN: the trial scored several widths
        params["num_beams"] = int(width)
    return params


def outcome_counts(grid, max_epochs: int, trains: bool) -> dict[str, int]:
    """How the regime's trials ended: {"pruned": n, "errored": n, "diverged": n}."""
    ends = [ended_as(r.metrics, max_epochs, errored=r.error is not None, trains=trains) for r in grid]
    return {name: ends.count(name) for name in ("pruned", "errored", "diverged")}
