"""The Ray Tune trainables: one per regime, each a plain function of its searched config.

A trainable receives its sampled hyperparameters (`lr`, `batch_size`, `num_beams`, ...) as `params`; the
rest of the `Config` and the tokenized data arrive once through `tune.with_parameters`, so nothing large
is pickled per trial. Each epoch it reports the metrics with a checkpoint and, on a restart, resumes from
`tune.get_checkpoint()`. Every trainable is the same loop (`study.training.loop.fit`): regimes differ only
in how the model is built and which parameters train.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from study import progress
from study.config import Budget, Config
from study.data.prepared import PreparedData
from study.model.regimes import REGIMES, Regime, ensure_registered, get_regime
from study.training.loop import fit


def node() -> dict:
    """Which Ray node runs this code: its id (unique even when several nodes share one machine) and IP."""
    try:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    except Exception:  # noqa: BLE001 - outside Ray there is no node to name
        return {"node_id": "local", "node_ip": "local"}


def run_in_tune(regime: Regime, params: dict, base: dict, data: PreparedData, greedy_bleu: bool = False) -> None:
    """One trial of `regime` inside Ray Tune: report every epoch with a checkpoint, resume from one.
    `greedy_bleu`: report greedy validation BLEU beside a beam trial's own (`fit`), for ASHA's rungs."""
    from ray import tune

    # The regime's definition travels with the trial (a regime registered at run time in the driver is
    # unknown to a fresh worker). Registered here, not in `train`: Ray ships `train` by value, with a *copy*
    # of the registry it refers to.
    ensure_registered(regime)
    # Progress bars inside epochs and validation drawn by the driver (ray.experimental.tqdm_ray), each
    # labelled with its trial's name.
    progress.running_in_ray(tune.get_context().get_trial_name() or regime.name)
    config = Config.from_dict(base).replace(regime=regime.name, **params)
    where = node()

    def report(metrics: dict, save) -> None:
        metrics = {**metrics, **where}
        if save is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            save(Path(directory))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        fit(config, data, report, greedy_bleu=greedy_bleu)
    else:
        with checkpoint.as_directory() as directory:
            fit(config, data, report, resume_from=directory, greedy_bleu=greedy_bleu)


def trainable(regime: str) -> Callable[..., None]:
    """The trainable of `regime`, named `train_<regime>` with dashes as underscores (Tune shows trials by
    their function's name)."""
    definition: Regime = get_regime(regime)

    def train(params: dict, base: dict, data: PreparedData, greedy_bleu: bool = False) -> None:
        run_in_tune(definition, params, base, data, greedy_bleu)

    train.__name__ = train.__qualname__ = f"train_{regime.replace('-', '_')}"
    return train


class _Trainables(dict):
    """Regime name -> its trainable; a regime registered after this module was imported gets one on lookup."""

    def __missing__(self, regime: str) -> Callable[..., None]:
        # Not cached: the registry may change again (a test registers and removes a regime).
        return trainable(regime)  # get_regime raises the usual StudyError for a name never registered


TRAINABLES = _Trainables({name: trainable(name) for name in REGIMES})


def with_data(regime: str, base: Config, budget: Budget, data: PreparedData, greedy_bleu: bool = False):
    """The regime's trainable as Tune runs it: its Config and data passed once (`tune.with_parameters`), one
    trial's resources, and whether its beam trials also report greedy validation BLEU (`fit`)."""
    from ray import tune

    return tune.with_resources(
        # The trials get the data without its test split: selection can only ever see validation.
        tune.with_parameters(TRAINABLES[regime], base=base.to_dict(), data=data.for_trials(), greedy_bleu=greedy_bleu),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial},
    )


def warm_worker() -> None:
    """Ray's `worker_process_setup_hook` (`study.tuning.runner.start_ray`): a worker process imports this module,
    and with it torch, transformers and the training loop, when it starts, before any trial or scoring task is
    given to it. Ray starts idle workers ahead of need, so a trial's actor that lands on one starts without
    the ~5 s of imports; there is nothing else to do here."""
