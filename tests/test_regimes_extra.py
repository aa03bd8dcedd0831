"""The regime registry: the extra regimes train exactly their parts, LoRA checkpoints resume and export as a
plain T5, `--regime` groups expand, and a regime registered in a test runs a whole study with no other edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_FLAGS, SMALL_MODEL, write_pairs
from transformers import T5ForConditionalGeneration

from study.config import Config, StudyError
from study.data.batching import make_loader
from study.data.prepared import PreparedData, prepare_data
from study.model.regimes import REGIMES, Regime, build_model, parse_regimes, register
from study.model.weights import random_model
from study.training.loop import fit
from study.trial import run_single
from study.tuning.trainables import TRAINABLES  # before any test registers a regime

SMALL = dict(**SMALL_MODEL, max_eval_pairs=20, eval_batch_size=32, batch_size=16, epochs=2, lr=3e-3, torch_threads=1)
EXTRA = ["lora", "encoder", "frozen-embeddings"]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("regimes")
    pairs = root / "pairs.tsv"
    write_pairs(pairs, 200)
    return Config(data=str(pairs), cache_dir=str(root / "cache"), **SMALL)


@pytest.fixture(scope="module")
def data(config) -> PreparedData:
    data = prepare_data(config)
    # A random stand-in for the pretrained upstream: these tests are about which parameters train, not quality.
    data.upstream = random_model(config, data.tokenizer).state_dict()
    return data


def _size(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("targets", ["q,v", "q,k,v,o"])
def test_each_extra_regime_trains_exactly_its_parts(config, data, targets):
    config = config.replace(lora_targets=targets, lora_rank=4)
    plain = random_model(config, data.tokenizer)
    total, embedding = _size(plain), plain.shared.weight.numel()  # lm_head is tied to `shared`: counted once
    counts = {r: build_model(config.replace(regime=r), data.tokenizer, data.upstream)[1] for r in ["full", *EXTRA]}
    assert counts["full"]["trainable_params"] == total
    # encoder: its blocks and final norm; its embed_tokens *is* the frozen `shared`
    assert counts["encoder"] == {"total_params": total, "trainable_params": _size(plain.encoder) - embedding}
    assert counts["frozen-embeddings"] == {"total_params": total, "trainable_params": total - embedding}
    # lora: rank x (in + out) per adapted projection; every attention (encoder self, decoder self and cross)
    attentions = config.tiny_layers * 3
    inner = config.tiny_heads * (config.tiny_d_model // config.tiny_heads)
    adapters = attentions * len(targets.split(",")) * config.lora_rank * (config.tiny_d_model + inner)
    assert counts["lora"] == {"total_params": total + adapters, "trainable_params": adapters}
    assert counts["lora"]["trainable_params"] < 0.2 * counts["full"]["trainable_params"]


@pytest.mark.parametrize("regime", EXTRA)
def test_frozen_parts_do_not_move_in_a_step(config, data, regime):
    """One optimizer step: the embedding (and for `encoder` the decoder, for `lora` every base weight) stays."""
    model, _ = build_model(config.replace(regime=regime), data.tokenizer, data.upstream)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = next(iter(make_loader(data.train, data.tokenizer, 8, shuffle=False)))
    model(**batch).loss.backward()
    optimizer.step()
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved, "nothing trained"
    assert not any(k.endswith(("shared.weight", "embed_tokens.weight", "lm_head.weight")) for k in moved), moved
    if regime == "encoder":
        assert all(k.startswith("encoder.") for k in moved), moved
    if regime == "lora":
        assert all(".lora_" in k for k in moved), moved


def test_decoder_regime_runs_no_encoder_backward_and_keeps_no_encoder_optimizer_state(config, data):
    """The frozen encoder costs `decoder` trials a forward pass only: autograd records nothing through it (its
    output needs no gradient), no encoder tensor gets a gradient, and AdamW holds state for decoder tensors only."""
    from study.training.loop import make_optimizer, training_step

    config = config.replace(regime="decoder")
    model, _ = build_model(config, data.tokenizer, data.upstream)
    encoder_out = []
    model.encoder.register_forward_hook(lambda module, args, out: encoder_out.append(out.last_hidden_state))
    optimizer, scheduler = make_optimizer(model, config, total_steps=4)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert not encoder_ids & {id(p) for group in optimizer.param_groups for p in group["params"]}
    batch = next(iter(make_loader(data.train, data.tokenizer, 8, shuffle=False)))
    model(**batch).loss.backward()
    assert encoder_out and not encoder_out[-1].requires_grad and encoder_out[-1].grad_fn is None
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    training_step(model, batch, optimizer, scheduler, config, torch.device("cpu"))
    state_ids = {id(p) for p in optimizer.state}
    assert state_ids and not state_ids & encoder_ids
    assert state_ids == {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.slow
def test_lora_checkpoint_resumes_exactly_and_exports_a_plain_t5(config, data, tmp_path):
    config = config.replace(regime="lora", lora_rank=4, lora_alpha=8)
    uninterrupted = run_single(config, data=data, quiet=True)
    checkpoint_dir = tmp_path / "ckpt"

    class Interrupted(Exception):
        pass

    def report_then_die(metrics, save):
        checkpoint_dir.mkdir()
        save(checkpoint_dir)
        raise Interrupted

    with pytest.raises(Interrupted):
        fit(config, data, report_then_die)
    state = torch.load(checkpoint_dir / "state.pt", weights_only=False)["model"]
    assert any(".lora_A." in k for k in state) and any(".base_layer." in k for k in state)
    resumed = run_single(config, checkpoint_dir, resume=True, data=data, quiet=True)
    assert [m["epoch"] for m in resumed] == [2]
    for key in ("train_loss", "val_loss", "val_bleu", "lr"):
        assert resumed[0][key] == pytest.approx(uninterrupted[1][key], rel=1e-6, abs=1e-9), key

    # The export merges the adapters: a plain T5 that computes what the adapted model computes, and
    # loads back without peft.
    model, _ = build_model(config, data.tokenizer, data.upstream)
    model.load_state_dict(state)
    model.eval()
    plain = REGIMES["lora"].export_model(model)
    assert type(plain) is T5ForConditionalGeneration
    assert not any("lora" in k for k in plain.state_dict())
    plain.save_pretrained(tmp_path / "export")
    loaded = T5ForConditionalGeneration.from_pretrained(tmp_path / "export").eval()
    batch = next(iter(make_loader(data.validation, data.tokenizer, 4, shuffle=False)))
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-5)
    assert any(".lora_A." in k for k in model.state_dict()), "export must not strip the model it was given"


def test_regime_groups_and_lists():
    assert parse_regimes("all") == ["upstream", "scratch", "decoder", "full"]
    assert parse_regimes("all+extra") == ["upstream", "scratch", "decoder", "full", *EXTRA]
    assert parse_regimes("lora,full") == ["lora", "full"]
    assert parse_regimes("all,lora,full") == ["upstream", "scratch", "decoder", "full", "lora"]
    with pytest.raises(StudyError, match="all\\+extra"):
        parse_regimes("lora,sideways")


def test_trainable_names_come_from_regime_names():
    assert TRAINABLES["frozen-embeddings"].__name__ == "train_frozen_embeddings"
    assert set(TRAINABLES) == set(REGIMES)


@pytest.fixture
def throwaway_name():
    yield "throwaway-x"
    REGIMES.pop("throwaway-x", None)  # the registry is the process's: leave it as it was


@pytest.mark.slow
def test_a_regime_registered_in_a_test_runs_a_whole_study(data, tmp_path, throwaway_name, capsys):
    """One registry entry (defined here, unknown to the Ray workers' import of the registry) and a
    search space: the study trains it, scores it on test, and the summary and report show it."""
    from study.run import main as run_main

    def train_only_the_decoder_blocks(model, config):  # local, so Ray ships it by value
        model.requires_grad_(False)
        for block in model.decoder.block:
            block.requires_grad_(True)

    register(Regime(throwaway_name, False, True, train_only_the_decoder_blocks, "random init, decoder blocks trained"))
    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 400)
    space = tmp_path / "space.yaml"
    space.write_text("search:\n  lr: {distribution: choice, values: [3.0e-3]}\nfixed: {batch_size: 32}\n")
    code = run_main(["--regime", "throwaway-x", "--data", str(pairs), "--results", str(tmp_path / "results"),
                     "--name", "extra", "--cache-dir", str(tmp_path / "cache"), "--search-space", str(space),
                     "--num-samples", "1", "--max-epochs", "1", "--max-concurrent", "1", *SMALL_FLAGS,
                     "--max-eval-pairs", "20", "--max-test-pairs", "20", "--seeds", "1"])
    assert code == 0, capsys.readouterr().err
    assert TRAINABLES["throwaway-x"].__name__ == "train_throwaway_x"
    study = tmp_path / "results" / "extra"
    best = json.loads((study / "throwaway-x" / "best.json").read_text())
    decoder_blocks = random_model(Config(**SMALL), data.tokenizer).decoder.block  # vocabulary-independent
    assert best["trainable_params"] == sum(_size(b) for b in decoder_blocks) > 0
    assert (study / "summary.csv").read_text().splitlines()[1].startswith("throwaway-x,")
    report = (study / "report.md").read_text()
    assert "| `throwaway-x` | finished |" in report
    assert "## Which part is worth training" in report and "| 1 | `throwaway-x` ◆ |" in report
    assert json.loads((study / "study.json").read_text())["trains"] == {"throwaway-x": True}


def _analysis(tmp_path: Path, rows: list[dict]):
    import pandas as pd

    from study.analysis.load import StudyAnalysis

    comparison = pd.DataFrame([{"state": "finished", "test_bleu_sd": float("nan"), "trial_wall_s": 60.0,
                                "epoch_s_median": 20.0, **r} for r in rows])
    empty = pd.DataFrame()
    return StudyAnalysis(tmp_path, {}, empty, empty, empty, comparison, {})


def test_worth_training_ranks_every_regime_and_marks_the_frontier(tmp_path):
    """Any regime names: ranked by test BLEU; on the frontier only if nothing with fewer trainable
    parameters scored higher; the plot is drawn on a log axis with the untrained regime as a line."""
    from study.analysis import plots
    from study.analysis.report import markdown_table
    from study.analysis.worth_training import section, worth_training

    a = _analysis(tmp_path, [
        {"regime": "big", "test_bleu": 20.0, "trainable_params": 1000, "total_params": 1000},
        {"regime": "adapters", "test_bleu": 18.0, "trainable_params": 50, "total_params": 1050},
        {"regime": "half", "test_bleu": 12.0, "trainable_params": 400, "total_params": 1000},
        {"regime": "zero-shot", "test_bleu": 1.0, "trainable_params": 0, "total_params": 1000},
        {"regime": "fresh", "test_bleu": 5.0, "trainable_params": 1000, "total_params": 1000},
        {"regime": "unfinished", "state": "running", "test_bleu": float("nan"), "trainable_params": 10,
         "total_params": 1000},
    ])
    w = worth_training(a)
    assert list(w["regime"]) == ["big", "adapters", "half", "fresh", "zero-shot"]
    assert dict(zip(w["regime"], w["frontier"])) == {"big": True, "adapters": True, "half": False, "fresh": False,
                                                     "zero-shot": True}
    text = "\n".join(section(a, markdown_table))
    assert "| 2 | `adapters` ◆ | 18.00 | 50 | 4.76 % |" in text
    assert "`adapters`, reached 18.00 (-2.00) with 50, 5 % of them" in text
    drawn = []
    assert plots.worth_training(a, tmp_path / "w.png", lambda path, write: drawn.append(write(path)))
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_worth_training_ranks_a_tie_by_fewer_trainable_parameters(tmp_path):
    from study.analysis.report import markdown_table
    from study.analysis.worth_training import section, worth_training

    a = _analysis(tmp_path, [{"regime": "many", "test_bleu": 3.0, "trainable_params": 900, "total_params": 1000},
                             {"regime": "few", "test_bleu": 3.0, "trainable_params": 90, "total_params": 1000}])
    assert list(worth_training(a)["regime"]) == ["few", "many"]
    assert "`few`, `many` tie for the highest test BLEU (3.00); `few` trains the fewest" in "\n".join(
        section(a, markdown_table))
