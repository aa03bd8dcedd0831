"""A regime's best configuration trained again with further seeds, so its test score comes with a spread.

After a regime's search, `run_seed_trials` runs the winning hyperparameters once per extra seed as Ray Tune
trials (experiment `<regime>/seeds`, a grid over `seed`), in parallel, with the search's resources per
trial. The seed sets the model's initialisation, dropout and batch order (`Config.seed`); the data and the
pretrained upstream stay the study's, so the spread measured is that of training alone.

Comparable runs: each seed re-run trains exactly as long as the best trial's *selected* epoch k (the epoch
whose validation BLEU made it the best trial, which ASHA may have stopped before the budget) and is scored
at that epoch k, with the same schedule (the same `epochs`, so the same warm-up and decay; Tune's stop at
epoch k). So every model behind a regime's mean ± sd and its seeded bootstrap trained k epochs, none for the
full budget beside one stopped early. (The alternative, ranking only trials that ran the full budget, would
change which trial the search picks; this one leaves selection as it is.)

Independent runs: the extra seeds are derived from the study seed with numpy's SeedSequence, not study
seed + k, so the re-runs of a study at --seed 0 are not the best trials of studies at --seed 1, 2, ... (the
batch order is drawn from the pair (seed, epoch) as well: `study.data.batching.order_seed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.tuning.trials import trial_dirname

if TYPE_CHECKING:  # the analysis imports SEEDS_EXPERIMENT from here, and must not import Ray or torch
    from study.config import Budget, Config
    from study.data.prepared import PreparedData

SEEDS_EXPERIMENT = "seeds"  # under the regime's experiment folder: <study>/<regime>/seeds/trial_*


def extra_seeds(study_seed: int, seeds: int) -> list[int]:
    """The seeds after the search's own (`seeds` in all, the study's seed being the best trial's): spawned
    from the study seed by numpy's SeedSequence, 31-bit, so that studies at nearby seeds share none."""
    import numpy as np

    children = np.random.SeedSequence(study_seed % 2**32).spawn(max(seeds - 1, 0))
    return [int(child.generate_state(1)[0] & 0x7FFFFFFF) for child in children]


def run_seed_trials(regime: str, base: Config, budget: Budget, params: dict, seeds: list[int], tune_storage: str,
                    data: PreparedData, resume: bool = False, *, epochs: int):
    """Train `params` (the best trial's hyperparameters) once per seed in `seeds`, each for `epochs` epochs
    (the best trial's selected epoch) and checkpointed at its last; returns Tune's ResultGrid.

    `base`: the regime's Config (search space's fixed values applied), as the search's trials got it: its
    `epochs` (the budget) still sets the learning-rate schedule, as it did for the best trial."""
    from ray import tune

    from study.tuning.trainables import with_data

    # As the search's, without its greedy pass (nothing ranks by it) and decoding with the chosen width alone: a
    # seed run selects nothing, so it needs no other width.
    trainable = with_data(regime, base.replace(val_beams=()), budget, data)
    storage = f"{tune_storage}/{regime}"
    if resume and tune.Tuner.can_restore(f"{storage}/{SEEDS_EXPERIMENT}"):
        print(f"[{regime}] resuming its seed runs", flush=True)
        return tune.Tuner.restore(f"{storage}/{SEEDS_EXPERIMENT}", trainable=trainable, resume_errored=True).fit()
    print(f"[{regime}] training the best configuration again with seeds {seeds}, {epochs} epoch(s) each (the "
          "best trial's selected epoch)", flush=True)
    tuner = tune.Tuner(
        trainable,
        param_space={**params, "seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=budget.max_concurrent or None,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=SEEDS_EXPERIMENT, storage_path=storage, stop={"epoch": epochs},
            # the last epoch's checkpoint (epoch `epochs`) is the one scored: not each seed's best on validation
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=budget.max_failures), verbose=1,
        ),
    )
    return tuner.fit()
