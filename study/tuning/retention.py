"""Which trial checkpoints a study keeps on disk: what a running trial needs to resume, and the
regime's best, nothing else (`--keep-checkpoints` keeps everything).

Three layers, each bounding what the one before leaves:
- Tune's own checkpoint manager (`checkpoint_config`): a running trial keeps its best epoch's
  checkpoint by validation BLEU (scored on test should it end up the regime's best) and its latest
  (to resume from) — at most two, one when they coincide.
- `CheckpointRetention`, a Tune callback: when a trial ends — finished, stopped by ASHA or diverged — every
  such trial whose best validation BLEU is below the regime's best so far loses its checkpoints. Trials tied
  with the best keep theirs, so whichever of them `best_trial` picks still has one. A trial that *errored*
  (its retries used up) keeps its latest checkpoint: `--resume` continues it from there
  (`Tuner.restore(resume_errored=True)`), so it is not the callback's to delete; `keep_only_best` does once
  the regime's search is over.
- `keep_only_best`, once the regime's search is over: only the best trial's best checkpoint is left,
  without the optimizer state that only a resume needs.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from ray import tune

from study.training.checkpoints import CHECKPOINT_FILE, strip_to_model
from study.tuning.best import best_trial
from study.tuning.searcher import METRIC, MODE

CHECKPOINT_DIR_PREFIX = "checkpoint_"  # how Tune names the checkpoints inside a trial's folder


def checkpoint_config(keep_all: bool) -> tune.CheckpointConfig:
    """Tune keeps the `num_to_keep` best checkpoints by validation BLEU, and always the latest besides."""
    return tune.CheckpointConfig(num_to_keep=None if keep_all else 1, checkpoint_score_attribute=METRIC,
                                 checkpoint_score_order=MODE)


def trial_checkpoint_dirs(filesystem, trial_path: str) -> list[str]:
    """Every checkpoint folder in a trial's folder, whether Tune still tracks it or not (a trial stopped
    mid-epoch may write one more after it was told to stop)."""
    from pyarrow import fs

    try:
        entries = filesystem.get_file_info(fs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return []
    return sorted(e.path for e in entries
                  if e.type == fs.FileType.Directory and e.base_name.startswith(CHECKPOINT_DIR_PREFIX))


def _best_score(trial) -> float:
    score = trial.metric_analysis.get(METRIC, {}).get("max")
    return score if score is not None and math.isfinite(score) else -math.inf


class CheckpointRetention(tune.Callback):
    """Deletes the checkpoints of ended trials that are not (or no longer) their regime's best."""

    def __init__(self) -> None:
        # Tune calls on_trial_complete before it marks the trial TERMINATED, so ended trials are also
        # remembered here; errored ones too, to be left alone.
        self._ended: set[str] = set()
        self._errored: set[str] = set()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._trial_ended(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._errored.add(trial.trial_id)  # called only once its retries are used up
        self._trial_ended(trials, trial)  # an error is also a trial that ended: others may now be beaten

    def _trial_ended(self, trials: list, trial) -> None:
        self._ended.add(trial.trial_id)
        best = max(_best_score(t) for t in trials)
        for other in trials:
            if other.trial_id in self._errored or other.status == "ERROR":
                continue  # resumable: its latest checkpoint is where --resume continues it
            ended = other.trial_id in self._ended or other.status == "TERMINATED"
            if ended and _best_score(other) < best and other.checkpoint is not None:
                filesystem = other.checkpoint.filesystem
                for path in trial_checkpoint_dirs(filesystem, other.path):
                    filesystem.delete_dir(path)


def delete_checkpoints(grid, keep: str | None = None) -> None:
    """Delete every checkpoint folder of the trials of a Tune ResultGrid, but the one at `keep`."""
    for result in grid:
        if result.path is None:
            continue
        for path in trial_checkpoint_dirs(result.filesystem, result.path):
            if path != keep:
                result.filesystem.delete_dir(path)


def keep_only_best(grid, regime: str, study_dir: Path) -> str | None:
    """After a regime's search: delete every checkpoint but the best trial's best one, and strip that one
    to its model. Returns the kept checkpoint's path (None for a regime that trains nothing)."""
    best = best_trial(grid, regime, study_dir)
    kept = best.checkpoint.path if best.checkpoint is not None else None
    delete_checkpoints(grid, keep=kept)
    if kept is not None:
        _strip_in_place(best.checkpoint)
    return kept


def prune_regime(grid, regime: str, study_dir: Path, seed_grid=None) -> None:
    """Once a regime is scored: its best trial's best checkpoint alone stays, model only, and the seed re-runs'
    checkpoints go. Running it again changes nothing, so a study interrupted before (or while) pruning a regime
    prunes it on `--resume` (`saved_results`)."""
    keep_only_best(grid, regime, study_dir)
    if seed_grid is not None:  # the seed re-runs are scored too: none of theirs is needed any more
        delete_checkpoints(seed_grid)


def saved_results(tune_storage: str, regime: str) -> tuple:
    """A regime's search and seed re-runs (None where it had none) as Tune saved them, read without running or
    restoring a trial: what pruning needs for a regime scored before the study was interrupted."""
    from study.tuning.seeds import SEEDS_EXPERIMENT

    experiment = f"{tune_storage}/{regime}"
    seeds = f"{experiment}/{SEEDS_EXPERIMENT}"
    seed_grid = tune.ResultGrid(tune.ExperimentAnalysis(seeds)) if tune.Tuner.can_restore(seeds) else None
    return tune.ResultGrid(tune.ExperimentAnalysis(experiment)), seed_grid


def _strip_in_place(checkpoint) -> None:
    """`strip_to_model` on a checkpoint wherever it lives: in place on a local disk, else through a
    local copy uploaded back over the original file."""
    from pyarrow import fs

    if isinstance(checkpoint.filesystem, fs.LocalFileSystem):
        strip_to_model(checkpoint.path)
        return
    with tempfile.TemporaryDirectory() as local:
        fs.copy_files(f"{checkpoint.path}/{CHECKPOINT_FILE}", f"{local}/{CHECKPOINT_FILE}",
                      source_filesystem=checkpoint.filesystem)
        strip_to_model(local)
        fs.copy_files(f"{local}/{CHECKPOINT_FILE}", f"{checkpoint.path}/{CHECKPOINT_FILE}",
                      destination_filesystem=checkpoint.filesystem)
