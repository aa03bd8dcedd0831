"""More trials for a finished or interrupted study: `study.run --resume NAME --more-trials N`.

Ray Tune cannot add trials to an experiment (`Tuner.restore` is for fault tolerance only, ray-project/ray#18847),
but Optuna can continue a study. So extension k of a regime's search runs as a Tune experiment of its own,
`<regime>/more-<k>/` (as the seed re-runs are `<regime>/seeds/`), whose searcher continues the regime's Optuna
study in optuna.db (Ray's OptunaSearch creates it with load_if_exists): TPE proposes from every earlier trial,
finished or pruned. The regime's trials are then its search's and every extension's (`SearchTrials`), which
the best-trial choice, the test scoring and the checkpoint retention read as they read one ResultGrid.

- study.json's `more_trials` lists the extensions asked for (trials per regime each). An extension that was
  interrupted is completed by the same command before any further one starts.
- A regime whose best trial is still best.json's is not scored on test again; one whose best changed is
  scored (its seed re-runs, if the study has them, are run again for the new best; the earlier ones are kept
  as `<regime>/seeds-<k>/`). study.json's `test_scored` counts each regime's test scorings.
- Each extension's ASHA starts with empty rungs: it stops an extension's trials by comparing them with each
  other, not with the earlier trials (Tune's scheduler state is per experiment).
- Each extension's sampler has a seed of its own (a random sampler with the search's seed would draw the
  search's points again); TPE's other settings are the search's.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from pathlib import Path

from study.common import write_json
from study.config import Budget, Config, StudyError
from study.data.prepared import PreparedData
from study.model.regimes import REGIMES
from study.tuning.internals import read_experiment_state
from study.tuning.searcher import planned_trials, regime_seed, sampler_settings
from study.tuning.space import SearchSpace
from study.tuning.trials import MORE_PREFIX

ENDED = ("TERMINATED", "ERROR")


class SearchTrials:
    """A regime's trials across several Tune ResultGrids (its search and its extensions), read as one grid:
    iteration, len, num_terminated, num_errors and get_best_result as ResultGrid has them."""

    def __init__(self, grids: list) -> None:
        self.grids = list(grids)

    def __iter__(self):
        return itertools.chain.from_iterable(self.grids)

    def __len__(self) -> int:
        return sum(len(g) for g in self.grids)

    @property
    def num_terminated(self) -> int:
        return sum(g.num_terminated for g in self.grids)

    @property
    def num_errors(self) -> int:
        return sum(g.num_errors for g in self.grids)

    def get_best_result(self, metric: str, mode: str, scope: str = "all"):
        """Each grid's own best (Tune's choice), then the best of those by the same rule."""
        candidates = [g.get_best_result(metric=metric, mode=mode, scope=scope) for g in self.grids
                      if any(r.metrics and metric in r.metrics for r in g)]
        if not candidates:
            raise RuntimeError(f"no trial reported {metric}")
        sign = 1 if mode == "max" else -1

        def score(result) -> float:
            history = result.metrics_dataframe[metric]
            return sign * float(history.max() if mode == "max" else history.min()) if scope == "all" else \
                sign * float(result.metrics[metric])

        return max(candidates, key=score)


def _complete(experiment_dir: Path, trials: int) -> bool:
    state = read_experiment_state(experiment_dir)
    return len(state) >= trials and all(s["status"] in ENDED for s in state.values())


def plan_extensions(study_dir: Path, regimes: list[str], more: int) -> list[int]:
    """The extensions the study's regimes run now (trials each, oldest first), recorded in study.json: those
    done before plus `more`, unless the last one was interrupted, which is then completed instead."""
    if more < 1:
        raise StudyError(f"--more-trials must be at least 1, got {more}")
    path = Path(study_dir) / "study.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    done = list(record.get("more_trials", []))
    trained = [r for r in regimes if REGIMES[r].trains]
    if done and not all(_complete(Path(study_dir) / r / f"{MORE_PREFIX}{len(done)}", done[-1]) for r in trained):
        print(f"[study] the last --more-trials {done[-1]} was interrupted: completing it first (run --more-trials "
              f"again afterwards for more)", flush=True)
        return done
    record["more_trials"] = done + [more]
    for regime in regimes:  # scored once before the study counted its scorings
        if (Path(study_dir) / regime / "best.json").exists():
            record.setdefault("test_scored", {}).setdefault(regime, 1)
    write_json(path, record)
    return record["more_trials"]


def extend_regime(regime: str, config: Config, budget: Budget, space: SearchSpace, study_dir: Path,
                  tune_storage: str, data: PreparedData, grid, expected: int, extensions: list[int],
                  callbacks: list | None = None) -> tuple[object, int, bool]:
    """The regime's search (`grid`, `expected` trials) with every extension in `extensions` run or completed.

    Returns (all its trials as one grid, the trials planned in all, whether the regime's test scoring stands:
    its best.json names the best trial still, so the test split is not scored again). A regime that trains
    nothing has walked its whole grid of decoding choices: it is returned as it is."""
    from ray import tune

    from study.tuning.best import best_trial
    from study.tuning.retention import delete_checkpoints
    from study.tuning.runner import regime_trainable, restore_search, search_tuner
    from study.tuning.seeds import SEEDS_EXPERIMENT

    best_file = Path(study_dir) / regime / "best.json"
    scored = json.loads(best_file.read_text(encoding="utf-8")) if best_file.exists() else None
    if not REGIMES[regime].trains:
        return grid, expected, scored is not None
    if budget.seeds > 1 and "://" in tune_storage:
        raise StudyError("--more-trials on a study with --seeds keeps its earlier seed runs aside, which needs the "
                         "study on a local or shared file system, not at a URI")
    trainable = regime_trainable(regime, config.replace(regime=regime, **space.trial_base(REGIMES[regime].trains)),
                                 budget, data, space)
    grids = [grid]
    planned = planned_trials(True, budget.num_samples, space)
    for k, n in enumerate(extensions, start=1):
        name, storage = f"{MORE_PREFIX}{k}", f"{tune_storage}/{regime}"
        if tune.Tuner.can_restore(f"{storage}/{name}"):
            tuner = restore_search(f"{storage}/{name}", trainable)
        else:
            print(f"[{regime}] {n} more trial(s), continuing its Optuna study ({len(grids)} experiment(s) so far)",
                  flush=True)
            sampler = sampler_settings(budget.searcher, regime, planned + n, config.seed, budget.same_draws, True)
            sampler["seed"] = regime_seed(config.seed, f"{regime}/{name}")
            # the space's start points ran in the first search: an extension only samples
            tuner = search_tuner(trainable, regime, budget, dataclasses.replace(space, start=[]), study_dir, storage,
                                 name, n, sampler, callbacks)
        grids.append(tuner.fit())
        planned += n
    trials = SearchTrials(grids)
    if scored is None or trials.num_terminated + trials.num_errors < planned:
        return trials, planned, False  # never scored, or interrupted: the caller decides
    best = best_trial(trials, regime, Path(study_dir))
    if best.result.metrics.get("trial_id") == scored.get("trial_id"):
        print(f"[{regime}] best trial unchanged ({scored.get('trial_id')}, validation BLEU {best.best_val_bleu:.2f}): "
              f"its test score stands", flush=True)
        if not budget.keep_checkpoints:
            for extension in grids[1:]:
                delete_checkpoints(extension)
        return trials, planned, True
    seeds = Path(study_dir) / regime / SEEDS_EXPERIMENT
    if seeds.exists():  # the seed re-runs were the old best's: kept aside, the new best gets its own
        os.replace(seeds, seeds.with_name(f"{SEEDS_EXPERIMENT}-{len(extensions)}"))
    print(f"[{regime}] new best trial {best.result.metrics.get('trial_id')} (validation BLEU {best.best_val_bleu:.2f}, "
          f"was {scored.get('trial_id')} at {scored.get('best_val_bleu', float('nan')):.2f}): scoring it on test",
          flush=True)
    return trials, planned, False
