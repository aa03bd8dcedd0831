"""A regime's best configuration trained again with further seeds, so its test score comes with a spread.

After a regime's search, `run_seed_trials` runs the winning hyperparameters once per extra seed as Ray Tune
trials (experiment `<regime>/seeds`, a grid over `seed`), in parallel, with the search's resources per
trial. The seed sets the model's initialisation, dropout and batch order (`Config.seed`); the data and the
pretrained upstream stay the study's, so the spread measured is that of training alone. No ASHA: every
seed runs the full epoch budget, and keeps its best validation epoch's checkpoint for the test scoring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.tuning.trials import trial_dirname

if TYPE_CHECKING:  # the analysis imports SEEDS_EXPERIMENT from here, and must not import Ray or torch
    from study.config import Budget, Config
    from study.data.prepared import PreparedData

SEEDS_EXPERIMENT = "seeds"  # under the regime's experiment folder: <study>/<regime>/seeds/trial_*


def extra_seeds(study_seed: int, seeds: int) -> list[int]:
    """The seeds after the search's own: `seeds` in all, the study's seed (the best trial) first."""
    return [study_seed + k for k in range(1, seeds)]


def run_seed_trials(regime: str, base: Config, budget: Budget, params: dict, seeds: list[int], tune_storage: str,
                    data: PreparedData, resume: bool = False):
    """Train `params` (the best trial's hyperparameters) once per seed in `seeds`; returns Tune's ResultGrid.

    `base`: the regime's Config (search space's fixed values applied), as the search's trials got it."""
    from ray import tune

    from study.tuning.searcher import METRIC, MODE
    from study.tuning.trainables import TRAINABLES

    trainable = tune.with_resources(
        tune.with_parameters(TRAINABLES[regime], base=base.to_dict(), data=data.for_trials()),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial},
    )
    storage = f"{tune_storage}/{regime}"
    if resume and tune.Tuner.can_restore(f"{storage}/{SEEDS_EXPERIMENT}"):
        print(f"[{regime}] resuming its seed runs", flush=True)
        return tune.Tuner.restore(f"{storage}/{SEEDS_EXPERIMENT}", trainable=trainable, resume_errored=True).fit()
    print(f"[{regime}] training the best configuration again with seeds {seeds}", flush=True)
    tuner = tune.Tuner(
        trainable,
        param_space={**params, "seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=budget.max_concurrent or None,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=SEEDS_EXPERIMENT, storage_path=storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                    checkpoint_score_order=MODE),
            failure_config=tune.FailureConfig(max_failures=budget.max_failures), verbose=1,
        ),
    )
    return tuner.fit()
