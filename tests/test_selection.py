"""Selection on validation, test scored once — on a real (small) Ray Tune ResultGrid.

Two trials report scripted validation BLEU, and each epoch checkpoints a real tiny model of its own
(a distinct random init), so test scoring reveals which checkpoint it scored:
- trial A peaks at epoch 2 of 4 (9.0) and ends lower: its best epoch is not its last;
- trial B climbs steadily to 8.7: best on the last epoch, best by any "last epoch" rule, and its checkpoints
  are chosen to be the best on the test split.
`best_trial` must pick A at epoch 2, and `score_best` must score exactly A's epoch-2 checkpoint on test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_MODEL, write_pairs

from study.config import Config
from study.data.prepared import prepare_data
from study.metrics.generation import score_split
from study.model.weights import random_model
from study.outputs.holdout import score_best
from study.training.checkpoints import save_checkpoint
from study.training.loop import make_optimizer
from study.tuning.best import best_trial
from study.tuning.searcher import METRIC, MODE

pytestmark = pytest.mark.slow  # starts Ray

VAL_BLEU = {"A": [5.0, 9.0, 6.0, 7.0], "B": [8.0, 8.5, 8.6, 8.7]}
EPOCHS = 4
SCRIPT_OF_SEED = {1: "A", 2: "B"}  # the searched "hyperparameter" is a Config field, as a real one must be


@pytest.fixture(scope="module")
def data_and_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("selection")
    pairs = root / "pairs.tsv"
    write_pairs(pairs, 300)
    config = Config(data=str(pairs), cache_dir=str(root / "cache"), regime="scratch", **SMALL_MODEL,
                    max_eval_pairs=20,
                    max_test_pairs=20, eval_batch_size=32, epochs=EPOCHS, device="cpu", torch_threads=1)
    return prepare_data(config), config


def _seeds_by_test_loss(data, config) -> tuple[dict, dict[int, float]]:
    """Give each (trial, epoch) a random-init seed such that B's checkpoints score best on test and A's
    epoch 2 (best on validation) does not; returns that assignment and every seed's test loss."""
    losses = {}
    for seed in range(8):
        torch.manual_seed(seed)
        model = random_model(config, data.tokenizer)
        losses[seed] = score_split(model, data.test, data.tokenizer, config, torch.device("cpu"), split="test")[0]["test_loss"]
    ranked = sorted(losses, key=losses.get)  # lowest test loss first
    return {"B": ranked[:4], "A": ranked[4:]}, losses


def test_best_validation_epoch_of_the_best_validation_trial_is_what_test_scores(data_and_config, tmp_path):
    from ray import tune

    from study.tuning.runner import start_ray

    data, config = data_and_config
    seeds, test_loss = _seeds_by_test_loss(data, config)
    tokenizer = data.tokenizer

    def scripted(params: dict) -> None:
        """A trial whose validation BLEU is scripted and whose epoch-k checkpoint is a distinct random model."""
        name = SCRIPT_OF_SEED[params["seed"]]
        for epoch, bleu in enumerate(VAL_BLEU[name], start=1):
            torch.manual_seed(seeds[name][epoch - 1])
            model = random_model(config, tokenizer)
            optimizer, scheduler = make_optimizer(model, config, 10)
            directory = Path(tmp_path / f"ckpt-{name}-{epoch}")
            directory.mkdir()
            save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                            config=config)
            (directory / "who.json").write_text(json.dumps({"trial": name, "epoch": epoch}))
            tune.report({"epoch": epoch, METRIC: bleu, "val_loss": 1.0},
                        checkpoint=tune.Checkpoint.from_directory(directory))

    start_ray(None)
    tuner = tune.Tuner(
        scripted,
        param_space={"seed": tune.grid_search(list(SCRIPT_OF_SEED))},
        # As run_regime keeps checkpoints: the two best by validation BLEU, so the best epoch's survives.
        run_config=tune.RunConfig(name="selection", storage_path=str(tmp_path / "results"),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=METRIC,
                                                                          checkpoint_score_order=MODE)),
    )
    grid = tuner.fit()
    assert grid.num_errors == 0 and len(grid) == 2
    by_name = {SCRIPT_OF_SEED[r.config["seed"]]: r for r in grid}
    # The premise: by its last epoch B is the better trial, and B's checkpoints are the best on test.
    assert by_name["B"].metrics[METRIC] > by_name["A"].metrics[METRIC]
    best_on_test = min(test_loss, key=test_loss.get)
    assert best_on_test in seeds["B"] and test_loss[seeds["A"][1]] > test_loss[best_on_test]

    best = best_trial(grid, "scratch", tmp_path)
    assert SCRIPT_OF_SEED[best.result.config["seed"]] == "A" and best.best_epoch == 2 and best.best_val_bleu == 9.0
    with best.checkpoint.as_directory() as directory:
        assert json.loads((Path(directory) / "who.json").read_text()) == {"trial": "A", "epoch": 2}

    # Scored once on test: exactly A's epoch-2 model (its test loss, not any other checkpoint's).
    study_dir = tmp_path / "study"
    row = score_best(grid, "scratch", config, data, study_dir, 1.0, [])
    assert row["best_epoch"] == 2 and row["best_val_bleu"] == 9.0 and row["epochs_run"] == EPOCHS
    assert row["test_loss"] == pytest.approx(test_loss[seeds["A"][1]], rel=1e-6)
    assert all(row["test_loss"] != pytest.approx(test_loss[s], rel=1e-6) for s in test_loss if s != seeds["A"][1])
    written = json.loads((study_dir / "scratch" / "best.json").read_text())
    assert written["test_loss"] == row["test_loss"] and written["checkpoint"] == best.checkpoint.path


def test_trials_receive_data_without_the_test_split(data_and_config):
    """What `run_regime` ships to every trial (`PreparedData.for_trials`): the same train and validation,
    the upstream, and no test split — so no trial can score, or select on, test."""
    data, _ = data_and_config
    shipped = data.for_trials()
    assert data.test is not None and len(data.test) > 0
    assert shipped.test is None
    assert shipped.train is data.train and shipped.validation is data.validation
    assert shipped.tokenizer is data.tokenizer and shipped.upstream is data.upstream
