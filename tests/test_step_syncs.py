"""No host sync inside the training step: an epoch of `fit` reads its losses once per logging interval, not
once per step, and a non-finite loss still ends the trial as diverged within that interval (issue 46.1)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import SMALL_MODEL, write_pairs

from study.config import Config
from study.data.prepared import PreparedData, prepare_data
from study.training import loop

# Reading a tensor's value on the host: on a GPU each waits for everything queued before it.
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
# Reads by the project's own code are counted. transformers 5's T5 reads two itself each step (its mask
# builder asks `padding_mask.all()` to skip the encoder's and the cross-attention's masks: docs/performance.md),
# and torch's AdamW reads its step counters, which live on the host, not the device.
STUDY = str(Path(loop.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Config, PreparedData]:
    root = tmp_path_factory.mktemp("syncs")
    config = Config(data=str(write_pairs(root / "pairs.tsv", 300)), cache_dir=str(root / "cache"), **SMALL_MODEL,
                    regime="scratch", batch_size=4, epochs=1, max_eval_pairs=4, eval_batch_size=4, torch_threads=1,
                    device="cpu")
    prepared = prepare_data(config)
    return config, PreparedData(prepared.tokenizer, prepared.train, prepared.validation, prepared.validation)


class Steps:
    """`loop.training_step` wrapped: counts its calls, records the lr each trained at, and (from step
    `poison_at` on) feeds the model NaN weights, as a diverging trial's would become."""

    def __init__(self, poison_at: int | None = None):
        self.calls, self.lrs, self.poison_at, self.real = 0, [], poison_at, loop.training_step

    def __call__(self, model, batch, optimizer, scheduler, config, device, *args, **kwargs):
        self.calls += 1
        self.lrs.append(scheduler.get_last_lr()[0])
        if self.calls == self.poison_at:
            with torch.no_grad():
                model.lm_head.weight.fill_(float("nan"))
        return self.real(model, batch, optimizer, scheduler, config, device, *args, **kwargs)


def test_an_epoch_reads_the_device_once_per_interval_not_once_per_step(setup, monkeypatch):
    config, data = setup
    interval = 5  # below a tenth of the 60-step epoch, so it is the interval fit reads at
    # raising=False: against the step of before (no interval) the count below is what fails
    monkeypatch.setattr(loop, "READ_EVERY", interval, raising=False)
    reads = {"n": 0, "on": False}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            reads["n"] += reads["on"] and sys._getframe(1).f_code.co_filename.startswith(STUDY)
            return original(self, *args, **kwargs)
        return wrapper

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    steps = Steps()

    def step(*args, **kwargs):  # counting starts with the epoch's first step ...
        reads["on"] = True
        return steps(*args, **kwargs)

    def evaluate(*args, **kwargs):  # ... and ends where validation begins (generation reads as it must)
        reads["on"] = False
        return original_evaluate(*args, **kwargs)

    original_evaluate = loop.score_split
    monkeypatch.setattr(loop, "training_step", step)
    monkeypatch.setattr(loop, "score_split", evaluate)
    reported = []
    loop.fit(config, data, lambda metrics, save: reported.append(metrics))
    assert steps.calls >= 5 * interval, "too few steps for the count to tell per-step reads from per-interval ones"
    assert reported[-1]["diverged"] is False and math.isfinite(reported[-1]["train_loss"])
    # One read per interval, one at the epoch's end, and a little slack; the step of before read three
    # values a step (isfinite, the loss, the token count): 3 x steps.
    assert reads["n"] <= math.ceil(steps.calls / interval) + 3, (reads["n"], steps.calls)


@pytest.mark.parametrize("poison_at", [3, 17])
def test_a_nan_loss_ends_the_epoch_within_the_interval_as_diverged(setup, monkeypatch, poison_at):
    config, data = setup
    interval = 5  # below a tenth of the 60-step epoch, so it is the interval fit reads at
    monkeypatch.setattr(loop, "READ_EVERY", interval, raising=False)
    steps = Steps(poison_at)
    monkeypatch.setattr(loop, "training_step", steps)
    reported = []
    loop.fit(config.replace(epochs=2), data, lambda metrics, save: reported.append((metrics, save)))
    [(metrics, save)] = reported  # diverged in epoch 1: nothing validated, nothing more trained
    assert poison_at <= steps.calls <= math.ceil(poison_at / interval) * interval
    assert metrics["diverged"] is True and metrics["epoch"] == 1 and save is None
    assert math.isnan(metrics["train_loss"]) and math.isnan(metrics["val_loss"]) and metrics["val_bleu"] == 0.0
    assert metrics["train_tokens_per_s"] == 0.0
    assert metrics["lr"] == steps.lrs[poison_at - 1]  # the lr of the step whose loss was not finite
