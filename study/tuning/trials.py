"""A trial's folder name, and how a trial ended: finished, pruned (stopped by ASHA), diverged or errored.

Decided in one place: the searcher (to tell Optuna PRUNED rather than COMPLETE), the test scoring (to
count pruned trials) and the analysis (a trial's `status`) all ask this module. No Ray import: the
analysis uses it offline.
"""

from __future__ import annotations

FINISHED, PRUNED, DIVERGED, ERRORED = "finished", "pruned", "diverged", "errored"


def ended_as(last: dict | None, max_epochs: int, *, errored: bool = False, trains: bool = True) -> str:
    """The outcome of a trial that has ended, from its last reported result.

    - errored: it raised (after its retries), or ended without reporting anything;
    - diverged: its last result says it hit a non-finite loss (a real final result, not a stop);
    - finished: it reached `max_epochs` (a regime that trains nothing: its one evaluation);
    - pruned: it ended early without diverging or erroring, so the scheduler stopped it.
    """
    if errored or not last:
        return ERRORED
    if last.get("diverged"):
        return DIVERGED
    if not trains or int(last.get("epoch", 0)) >= max_epochs:
        return FINISHED
    return PRUNED


TRIAL_DIR_PREFIX = "trial_"
# <study>/<regime>/more-<k>/: the k-th extension of a regime's search (--more-trials, study.tuning.extend)
MORE_PREFIX = "more-"


def trial_dirname(trial) -> str:
    """A trial's folder: `trial_<number>_<trial id>`, e.g. `trial_3_4f2a1b7c` (the third trial Optuna proposed).

    Named by the project (TuneConfig(trial_dirname_creator=...)), so the analysis reads a trial's number and
    id from its folder name without reverse-engineering Tune's default names. The number is the counter at
    the head of Tune's experiment tag ("3_batch_size=16,lr=...")."""
    return f"{TRIAL_DIR_PREFIX}{trial_number(trial) or 0}_{trial.trial_id}"


def trial_number(trial) -> int | None:
    """A Tune trial's number in its experiment (1 for the first trial the searcher proposed): the counter at the
    head of its experiment tag ("3_batch_size=16,lr=..."), None where it has none."""
    number = str(getattr(trial, "experiment_tag", "")).partition("_")[0]
    return int(number) if number.isdigit() else None


def trial_id_of(dirname: str) -> str | None:
    """The trial id in a folder named by `trial_dirname`, else None."""
    if not dirname.startswith(TRIAL_DIR_PREFIX):
        return None
    number, _, trial_id = dirname[len(TRIAL_DIR_PREFIX):].partition("_")
    return trial_id if number.isdigit() and trial_id else None


def trial_number_of(dirname: str) -> int | None:
    """The trial's number (1 for the first trial proposed) in a folder named by `trial_dirname`."""
    number = dirname[len(TRIAL_DIR_PREFIX):].partition("_")[0] if dirname.startswith(TRIAL_DIR_PREFIX) else ""
    return int(number) if number.isdigit() else None


def extension_dirs(regime_dir) -> list:
    """The regime's extension experiments (`more-1`, `more-2`, ...) in the order they ran."""
    from pathlib import Path

    found = [d for d in Path(regime_dir).glob(f"{MORE_PREFIX}*") if d.is_dir() and d.name[len(MORE_PREFIX):].isdigit()]
    return sorted(found, key=lambda d: int(d.name[len(MORE_PREFIX):]))
