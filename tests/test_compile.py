"""The step built for the GPU (issue 46.2): `--compile` trains what eager trains, to float tolerance, through the
same step and loop; batches are padded to a few static shapes; the fused AdamW is picked where the device has it."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from conftest import SMALL_MODEL, write_pairs
from transformers import T5ForConditionalGeneration

from study.config import Config, StudyError, add_config_flags, config_from_flags
from study.data.batching import make_loader
from study.data.prepared import PreparedData, prepare_data
from study.model.regimes import build_model
from study.model.weights import tiny_config
from study.training import loop
from study.training import step as step_lib

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Config, PreparedData]:
    root = tmp_path_factory.mktemp("compile")
    config = Config(data=str(write_pairs(root / "pairs.tsv", 200)), cache_dir=str(root / "cache"), **SMALL_MODEL,
                    regime="scratch", batch_size=8, epochs=1, max_eval_pairs=4, eval_batch_size=4, torch_threads=1,
                    device="cpu", precision="fp32")
    prepared = prepare_data(config)
    return config, PreparedData(prepared.tokenizer, prepared.train, prepared.validation, prepared.validation)


def test_compile_is_a_flag_off_by_default():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, ["compile"])
    assert Config().compile is False
    assert config_from_flags(parser.parse_args(["--compile"])).compile is True
    assert config_from_flags(parser.parse_args(["--no-compile"])).compile is False
    assert "compile" not in vars(parser.parse_args([]))  # absent: a preset's or a record's value stands
    with pytest.raises(StudyError, match="compile must be true or false"):
        Config(compile="yes")


def test_batches_pad_to_the_compiled_shapes(setup):
    config, data = setup
    loader = make_loader(data.train, data.tokenizer, 8, shuffle=True, seed=0, epoch=1,
                         pad_to_multiple_of=step_lib.COMPILE_PAD)
    shapes = {(tuple(b["input_ids"].shape), tuple(b["labels"].shape)) for b in loader}
    assert all(s % step_lib.COMPILE_PAD == 0 and t % step_lib.COMPILE_PAD == 0 for (_, s), (_, t) in shapes)
    assert len(shapes) <= 2 * 3 * 3  # batch sizes (full, last) x source buckets x target buckets


def test_fused_adamw_where_the_device_has_it():
    """CUDA and the CPU: torch's CPU default is a Python loop over the parameters, 15x slower on the tiny model."""
    assert step_lib.optimizer_options(torch.device("cuda")) == {"fused": True}
    assert step_lib.optimizer_options(torch.device("mps")) == {}
    optimizer, _ = step_lib.make_optimizer(torch.nn.Linear(2, 2), Config(), total_steps=10)
    assert optimizer.param_groups[0]["fused"] is True


def _losses(config: Config, data: PreparedData, batches: list[dict], compiled: bool) -> list[float]:
    """Per-step losses of len(batches) steps from one seeded init, dropout off: inductor draws its own random
    numbers, so with dropout on the two would drop different units and agree only in distribution."""
    architecture = tiny_config(config, data.tokenizer)
    architecture.dropout_rate = 0.0
    torch.manual_seed(config.seed)
    model = T5ForConditionalGeneration(architecture).train()
    optimizer, scheduler = step_lib.make_optimizer(model, config, len(batches))
    forward = step_lib.compile_forward(model) if compiled else None
    tally = step_lib.StepTally()
    for batch in batches:
        tally.add(*step_lib.training_step(model, batch, optimizer, scheduler, config, CPU, forward))
    return [loss for loss, _ in tally.read()]


@pytest.mark.slow
def test_compiled_steps_lose_what_eager_steps_lose(setup):
    """8 steps, eager against inductor (its CPU backend, gcc), on the same padded batches: every step's loss
    within 1e-4 relative (measured: 1.5e-7; fused kernels round differently), so the updates match too."""
    from torch._dynamo.utils import counters

    config, data = setup
    loader = make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True, seed=0, epoch=1,
                         pad_to_multiple_of=step_lib.COMPILE_PAD)
    batches = [b for b in loader if len(b["labels"]) == config.batch_size][:8]
    eager = _losses(config, data, batches, compiled=False)
    counters.clear()
    compiled = _losses(config, data, batches, compiled=True)
    assert counters["stats"]["unique_graphs"] >= 1  # compiled indeed, not fallen back to eager
    assert len(eager) == 8 and eager[-1] < eager[0]  # it trained: the comparison is over moving weights
    assert compiled == pytest.approx(eager, rel=1e-4)


@pytest.mark.slow
def test_fit_with_compile_trains_and_saves_the_eager_models_weights(setup, tmp_path, monkeypatch):
    """fit's --compile path end to end: padded batches, the compiled forward in the step, the eager model
    generating and saved. Compiled with dynamo's `eager` backend (the tracing, without inductor's minutes of
    C++ compiling on a 2-core machine; the test above runs inductor)."""
    config, data = setup
    traced = []

    def compile_forward(model, shapes):
        traced.append(shapes)
        return step_lib.compile_forward(model, shapes, backend="eager")

    monkeypatch.setattr(loop, "compile_forward", compile_forward)
    reported = []
    loop.fit(config.replace(compile=True), data, lambda metrics, save: reported.append((metrics, save)))
    assert traced == [18]  # (96 / 32) source x (96 / 32) target buckets x (full, last) batch
    [(metrics, save)] = reported
    assert metrics["diverged"] is False and math.isfinite(metrics["train_loss"]) and metrics["val_bleu"] >= 0
    save(tmp_path)  # the checkpoint holds the model's own keys, not the compiled wrapper's `_orig_mod.` ones
    state = torch.load(tmp_path / "state.pt", weights_only=True)["model"]
    model, _ = build_model(config, data.tokenizer)
    assert set(state) == set(model.state_dict())
    eager = []
    loop.fit(config, data, lambda metrics, save: eager.append(metrics))
    # dropout draws over the padded shapes differ from the unpadded ones': the epoch's loss agrees to within
    # that noise (measured 0.1 %), not to rounding
    assert metrics["train_loss"] == pytest.approx(eager[-1]["train_loss"], rel=0.01)
