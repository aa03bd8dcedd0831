"""The Optuna searcher and the ASHA scheduler of one regime's search, and the trials' folder names.

Ray's private state that the searcher relies on is reached only through `study.tuning.internals`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from study.tuning import internals
from study.tuning.space import SearchSpace
from study.tuning.trials import PRUNED, ended_as

METRIC, MODE = "val_bleu", "max"  # what ASHA stops on and Optuna optimises: validation BLEU, per epoch


class AshaAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial ASHA stopped early as PRUNED, not COMPLETE.

    Ray's OptunaSearch tells Optuna every trial that ends without an error as COMPLETE with its last
    score, so a trial ASHA stopped after one epoch looks to TPE like a finished trial that scored
    poorly — and its early score is not comparable with finished ones. A trial that ends before
    `max_epochs` (and did not diverge, which is a real final result) was stopped by the scheduler:
    it is told PRUNED, keeping its per-epoch intermediate values, exactly as an Optuna pruner would.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        internals.check_ray_internals(self)
        self._max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = internals.optuna_trial(self, trial_id)
        done = internals.is_completed(self, trial_id)
        if result and ot_trial is not None and not done and self.metric in result:
            # Tune skips on_trial_result for the result on which a trial is stopped or ends, so that
            # epoch's score would be missing from the trial's intermediate values: record it here.
            step = result.get("training_iteration")
            if step is not None and step not in internals.intermediate_steps(ot_trial):
                ot_trial.report(result[self.metric], step)
        if ot_trial is not None and not done and ended_as(result, self._max_epochs, errored=error) == PRUNED:
            internals.tell_pruned(self, trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def optuna_storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / 'optuna.db').resolve()}"


def make_searcher(study_dir: Path, regime: str, max_epochs: int, seed: int,
                  sampler: str = "tpe") -> AshaAwareOptunaSearch:
    """Seeded TPE (or random sampling, as a baseline), its study `<regime>` stored in
    `<study_dir>/optuna.db` for optuna.load_study and optuna-dashboard."""
    import optuna

    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    return AshaAwareOptunaSearch(
        metric=METRIC, mode=MODE, max_epochs=max_epochs, study_name=regime,
        storage=optuna.storages.RDBStorage(optuna_storage_url(study_dir)),
        sampler=samplers[sampler](seed=seed),
    )


def make_scheduler(space: SearchSpace, max_epochs: int, grace_period: int | None, reduction_factor: int | None):
    """ASHA on val_bleu per epoch; flags beat the YAML, the YAML beats the defaults (1 and 2)."""
    from ray.tune.schedulers import ASHAScheduler

    grace = grace_period or space.asha.get("grace_period", 1)
    factor = reduction_factor or space.asha.get("reduction_factor", 2)
    return ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE,
                         max_t=max(max_epochs, 1), grace_period=min(grace, max(max_epochs, 1)),
                         reduction_factor=factor)
