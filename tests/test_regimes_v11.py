"""T5 v1.1 as an upstream: every regime does what its name says on an untied model (gated-GELU feed-forward, an
output head of its own), on a small v1.1-shaped configuration built here (no download). Expected counts are
computed from the configuration's shapes, not by the code under test."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from study.config import Config
from study.data.prepared import PreparedData
from study.model.regimes import REGIMES, build_model
from study.model.weights import random_model
from study.outputs.export import export_best
from study.training.checkpoints import save_checkpoint

V, D, HEADS, D_KV, D_FF, LAYERS, DECODER_LAYERS, BUCKETS = 512, 32, 2, 8, 48, 2, 3, 32
RANK = 4


def v11_config() -> T5Config:
    """google/t5-v1_1-small's layout, scaled down: gated-GELU, tie_word_embeddings false (as its config.json)."""
    return T5Config(vocab_size=V, d_model=D, d_kv=D_KV, d_ff=D_FF, num_layers=LAYERS,
                    num_decoder_layers=DECODER_LAYERS, num_heads=HEADS, relative_attention_num_buckets=BUCKETS,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


# The shapes, counted by hand (T5 with a gated feed-forward: wi_0 and wi_1 of d x d_ff, wo of d_ff x d; every
# attention q, k, v, o of d x heads*d_kv; one RMS norm weight of d per sub-layer and per stack; the first
# self-attention of each stack holds the relative position bias, buckets x heads).
INNER = HEADS * D_KV
ATTENTION, FEED_FORWARD, EMBEDDING = 4 * D * INNER, 3 * D * D_FF, V * D
ENCODER = LAYERS * (ATTENTION + FEED_FORWARD + 2 * D) + BUCKETS * HEADS + D  # blocks, bias, final norm
DECODER = DECODER_LAYERS * (2 * ATTENTION + FEED_FORWARD + 3 * D) + BUCKETS * HEADS + D
TOTAL = EMBEDDING + EMBEDDING + ENCODER + DECODER  # `shared` and the output head, each its own matrix
ADAPTERS = (LAYERS + 2 * DECODER_LAYERS) * 2 * RANK * (D + INNER)  # q and v of every attention
EXPECTED = {  # regime (decoder_embedding) -> (trainable, total)
    ("upstream", "frozen"): (0, TOTAL),
    ("scratch", "frozen"): (TOTAL, TOTAL),
    ("full", "frozen"): (TOTAL, TOTAL),
    ("decoder", "frozen"): (DECODER + EMBEDDING, TOTAL),  # the decoder's blocks and its own lm_head
    ("decoder", "trained"): (DECODER + 2 * EMBEDDING, TOTAL),  # ... and `shared`, the encoder's input too
    ("decoder", "untied"): (DECODER + 2 * EMBEDDING, TOTAL + EMBEDDING),  # ... and a copy of `shared` as input
    ("encoder", "frozen"): (ENCODER, TOTAL),  # blocks and final norm: embedding, head and decoder frozen
    ("frozen-embeddings", "frozen"): (TOTAL - 2 * EMBEDDING, TOTAL),  # both embedding matrices frozen
    ("lora", "frozen"): (ADAPTERS, TOTAL + ADAPTERS),
}


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory, spm_tokenizer):
    """A pretrained-looking T5 v1.1 directory: weights (an output head unlike the embedding) and tokenizer."""
    assert len(spm_tokenizer) <= V
    directory = tmp_path_factory.mktemp("t5-v1_1-tiny")
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(v11_config())
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(torch.randn(V, D))  # as the released v1.1: its own head
    model.save_pretrained(directory)
    spm_tokenizer.save_pretrained(directory)
    return directory


def _config(upstream_dir, regime: str, embedding: str = "frozen") -> Config:
    return Config(model=str(upstream_dir), regime=regime, decoder_embedding=embedding, lora_rank=RANK,
                  lora_targets="q,v", cache_dir=str(upstream_dir.parent / "cache"))


def _plain(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def test_the_hand_count_is_the_configurations_size():
    """The expected figures describe T5 v1.1's layout: a pretrained v1.1 model has exactly TOTAL parameters."""
    model = T5ForConditionalGeneration(v11_config())
    model.lm_head.weight = torch.nn.Parameter(torch.zeros(V, D))
    assert sum(p.numel() for p in model.parameters()) == TOTAL


@pytest.mark.parametrize("regime, embedding", list(EXPECTED))
def test_every_regime_trains_exactly_its_parts_of_an_untied_model(upstream_dir, spm_tokenizer, regime, embedding):
    model, counts = build_model(_config(upstream_dir, regime, embedding), spm_tokenizer)
    trainable, total = EXPECTED[regime, embedding]
    assert counts == {"trainable_params": trainable, "total_params": total}
    t5 = _plain(model)
    assert t5.lm_head.weight is not t5.shared.weight, "the output head must stay a matrix of its own"
    head_trains = t5.lm_head.weight.requires_grad
    assert head_trains == (regime in ("scratch", "full", "decoder")), head_trains
    assert t5.shared.weight.requires_grad == (regime in ("scratch", "full") or embedding == "trained")
    if regime == "decoder" and embedding == "untied":
        assert t5.decoder.embed_tokens.weight is not t5.shared.weight and t5.decoder.embed_tokens.weight.requires_grad


def test_scratch_is_a_random_init_of_the_same_untied_architecture(upstream_dir, spm_tokenizer):
    config = _config(upstream_dir, "scratch")
    pretrained = T5ForConditionalGeneration.from_pretrained(upstream_dir)
    torch.manual_seed(3)
    scratch = random_model(config, spm_tokenizer)
    assert scratch.lm_head.weight is not scratch.shared.weight
    assert {k: v.shape for k, v in scratch.state_dict().items()} == {k: v.shape for k, v in pretrained.state_dict().items()}
    assert not torch.equal(scratch.lm_head.weight, scratch.shared.weight)
    assert scratch.config.scale_decoder_outputs is False  # v1.1's forward: no d_model ** -0.5 before the head
    torch.manual_seed(3)
    assert torch.equal(random_model(config, spm_tokenizer).lm_head.weight, scratch.lm_head.weight)  # seeded


def _batch(tokenizer):
    source = tokenizer(["translate English to French: the cat sees the dog .", "a big house ."], padding=True,
                       return_tensors="pt")
    labels = tokenizer(["le chat voit le chien .", "une grande maison ."], padding=True, return_tensors="pt").input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    return {"input_ids": source.input_ids, "attention_mask": source.attention_mask, "labels": labels}


@pytest.mark.parametrize("regime", ["decoder", "encoder", "frozen-embeddings", "lora", "full"])
def test_one_step_moves_exactly_the_trained_parts(upstream_dir, spm_tokenizer, regime):
    model, _ = build_model(_config(upstream_dir, regime), spm_tokenizer)
    before = {k: v.detach().clone() for k, v in _plain(model).state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**_batch(spm_tokenizer)).loss.backward()
    optimizer.step()
    moved = {k for k, v in _plain(model).state_dict().items() if k in before and not torch.equal(before[k], v)}
    assert moved
    assert any(k.endswith(("shared.weight", "embed_tokens.weight")) for k in moved) == (regime == "full"), moved
    assert ("lm_head.weight" in moved) == (regime in ("decoder", "full")), moved
    if regime == "decoder":
        assert all(k.startswith(("decoder.", "lm_head.")) for k in moved), moved
    if regime == "encoder":
        assert all(k.startswith("encoder.") for k in moved), moved
    if regime == "lora":
        assert all(".lora_" in k for k in moved), moved


@pytest.mark.parametrize("regime", ["upstream", "scratch", "decoder", "full", "lora", "encoder", "frozen-embeddings"])
def test_export_of_an_untied_model_reloads_equal(upstream_dir, spm_tokenizer, regime, tmp_path):
    """The exported folder reloads, as a user loads it, to the same tensors and the same logits: its own head
    stays its own (and v1.1's unscaled decoder output stays unscaled)."""
    config = _config(upstream_dir, regime)
    model, _ = build_model(config, spm_tokenizer)
    row = {"config": config.to_dict(), "test_bleu": 1.0, "checkpoint": None}
    if REGIMES[regime].trains:  # as training leaves it: every trained tensor moved
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn_like(p))
        optimizer = torch.optim.AdamW(model.parameters())
        checkpoint = tmp_path / "checkpoint"
        checkpoint.mkdir()
        save_checkpoint(checkpoint, model=model, optimizer=optimizer, epoch=1, config=config,
                        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
        row["checkpoint"] = str(checkpoint)
    (tmp_path / "study" / regime).mkdir(parents=True)
    (tmp_path / "study" / regime / "best.json").write_text(json.dumps(row))
    data = PreparedData(spm_tokenizer, None, None, None, {"train": 10}, None)
    folder = export_best(tmp_path / "study", regime, data)
    expected = REGIMES[regime].export_model(model).eval()
    loaded = T5ForConditionalGeneration.from_pretrained(folder).eval()
    assert loaded.lm_head.weight is not loaded.shared.weight
    reloaded = loaded.state_dict()
    assert all(torch.equal(v, reloaded[k]) for k, v in expected.state_dict().items())
    batch = _batch(spm_tokenizer)
    with torch.no_grad():
        assert torch.allclose(expected(**batch).logits, loaded(**batch).logits, atol=1e-5)
