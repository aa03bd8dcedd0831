"""Every regime end to end: through `fit()` in this process, and in one small Ray study of all four.

What the README's regime table claims, checked on the weights themselves:
- `upstream` evaluates the pretrained model once and trains nothing;
- `decoder` (tied embedding frozen) leaves every encoder and shared-embedding tensor exactly the upstream's,
  bit for bit, while the decoder's tensors move;
- `full` moves both; `scratch` starts from a random init, never from the upstream;
- the pretrained regimes start from the upstream's weights (in `fit`, and in Ray trials, which receive them
  through `tune.with_parameters` together with data that has no test split).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_FLAGS, SMALL_MODEL, write_pairs

from study.config import Config
from study.metrics.generation import score_split
from study.model.regimes import build_model
from study.training import loop
from study.training.checkpoints import load_checkpoint
from study.training.pretraining import prepare_data_with_upstream

# Small enough that the upstream pretrains in seconds; the sizes are the Ray study's too, so both share
# the cached upstream.
PRETRAIN_STEPS = 40
TRIAL = dict(max_eval_pairs=20, eval_batch_size=32, batch_size=16, epochs=2, lr=3e-3, torch_threads=1,
             device="cpu", max_train_pairs=200)


def _is_encoder(name: str) -> bool:
    """The tensors `decoder` must leave alone: the encoder's and T5's shared (tied) token embedding, which is
    also the encoder's input embedding, the decoder's input embedding and the output head."""
    return name.startswith(("encoder.", "shared.")) or name in ("decoder.embed_tokens.weight", "lm_head.weight")


def _is_decoder(name: str) -> bool:
    return name.startswith("decoder.") and not _is_encoder(name)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("regimes") / "pairs.tsv"
    write_pairs(path, 400)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("regimes-cache")


@pytest.fixture(scope="module")
def config(pairs, cache_dir) -> Config:
    return Config(data=str(pairs), cache_dir=str(cache_dir), pretrain_steps=PRETRAIN_STEPS, **SMALL_MODEL, **TRIAL)


@pytest.fixture(scope="module")
def data(config):
    return prepare_data_with_upstream(config, need_upstream=True)


@pytest.fixture
def built(monkeypatch) -> list[tuple[torch.nn.Module, dict]]:
    """Every model `fit` builds, with a copy of its weights as built (before any training step). The model
    object itself is the one `fit` trains, so after `fit` it holds the trained weights."""
    seen: list[tuple[torch.nn.Module, dict]] = []
    real = loop.build_model

    def spy(*args, **kwargs):
        model, counts = real(*args, **kwargs)
        seen.append((model, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return model, counts

    monkeypatch.setattr(loop, "build_model", spy)
    return seen


def _fit(config: Config, data, regime: str, built) -> tuple[list[dict], list, dict, dict]:
    reports, saves = [], []
    loop.fit(config.replace(regime=regime), data, lambda metrics, save: (reports.append(metrics), saves.append(save)))
    assert len(built) == 1, "fit builds exactly one model"
    model, before = built[0]
    after = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return reports, saves, before, after


def _same(a: dict, b: dict, names) -> list[str]:
    """The names whose tensors differ between state_dicts `a` and `b` (bit for bit)."""
    return [n for n in names if not torch.equal(a[n], b[n])]


def test_upstream_evaluates_the_pretrained_model_once_and_trains_nothing(config, data, built):
    reports, saves, before, after = _fit(config, data, "upstream", built)
    assert [r["epoch"] for r in reports] == [0] and saves == [None]  # one evaluation, nothing to checkpoint
    assert reports[0]["trainable_params"] == 0 < reports[0]["total_params"]
    assert set(before) >= set(data.upstream)
    assert _same(before, data.upstream, data.upstream) == []  # the pretrained weights, not a random init
    assert _same(after, data.upstream, data.upstream) == []  # and still exactly them after fit
    # Its one score is the upstream's own: recomputed here on a model loaded straight from the upstream.
    model, _ = build_model(config.replace(regime="upstream"), data.tokenizer, data.upstream)
    metrics = score_split(model, data.validation, data.tokenizer, config, torch.device("cpu"))[0]
    assert reports[0]["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-6)
    assert reports[0]["val_bleu"] == pytest.approx(metrics["val_bleu"])


def test_decoder_leaves_the_encoder_and_shared_embedding_exactly_pretrained(config, data, built):
    reports, saves, before, after = _fit(config, data, "decoder", built)
    assert [r["epoch"] for r in reports] == [1, 2] and all(save is not None for save in saves)
    assert _same(before, data.upstream, data.upstream) == []  # it starts from the upstream
    encoder = [n for n in data.upstream if _is_encoder(n)]
    decoder = [n for n in data.upstream if _is_decoder(n)]
    assert "shared.weight" in encoder and "encoder.block.0.layer.0.SelfAttention.q.weight" in encoder
    assert len(decoder) > 10
    assert _same(after, data.upstream, encoder) == []  # bit for bit, after two epochs of training
    assert _same(after, data.upstream, decoder) == decoder  # while every decoder tensor moved
    assert 0 < reports[-1]["trainable_params"] < reports[-1]["total_params"]


def test_full_moves_encoder_and_decoder_from_the_upstream(config, data, built):
    reports, _, before, after = _fit(config, data, "full", built)
    assert _same(before, data.upstream, data.upstream) == []
    assert _same(after, data.upstream, data.upstream) == list(data.upstream)  # every tensor trained
    assert reports[-1]["trainable_params"] == reports[-1]["total_params"]


def test_scratch_starts_from_a_random_init_not_the_upstream(config, data, built):
    reports, _, before, after = _fit(config, data, "scratch", built)
    # Not one tensor of the upstream: a random init of the same architecture (layer norms start at ones).
    differ = _same(before, data.upstream, data.upstream)
    assert set(data.upstream) - set(differ) <= {n for n in data.upstream if "layer_norm" in n}
    assert [r["epoch"] for r in reports] == [1, 2]


def test_fit_gives_torch_its_thread_count_back(config, data, built):
    """A trial's `torch_threads` is the trial's: after `fit`, the process has its own thread count again."""
    torch.set_num_threads(3)
    loop.fit(config.replace(regime="upstream", torch_threads=1), data, lambda metrics, save: None)
    assert torch.get_num_threads() == 3


# ---------------------------------------------------------------------------- one Ray study, all regimes


@pytest.mark.slow
def test_study_of_all_four_regimes_hands_trials_the_upstream_and_no_test_split(
        config, data, pairs, cache_dir, tmp_path, monkeypatch, capsys):
    from ray import tune

    from study.run import main as run_main

    handed: dict[str, object] = {}
    real = tune.with_parameters

    def spy(trainable, **kwargs):  # what run_regime ships to each regime's trials
        handed[trainable.__name__] = kwargs["data"]
        return real(trainable, **kwargs)

    monkeypatch.setattr(tune, "with_parameters", spy)
    space = tmp_path / "space.yaml"
    space.write_text("search:\n  num_beams: {distribution: choice, values: [1]}\n"
                     "fixed: {lr: 3.0e-3, batch_size: 16, device: cpu}\n", encoding="utf-8")
    argv = ["--regime", "upstream,scratch,decoder,full", "--data", str(pairs), "--results", str(tmp_path / "results"), "--name", "all",
            "--cache-dir", str(cache_dir), "--search-space", str(space), "--num-samples", "1", "--max-epochs", "2",
            "--max-train-pairs", "200", "--max-eval-pairs", "20", "--eval-batch-size", "32",
            "--pretrain-steps", str(PRETRAIN_STEPS), "--max-concurrent", "1", "--gpus-per-trial", "0", "--seeds", "1",
            "--seed", "0", "--no-analysis", *SMALL_FLAGS]
    assert run_main(argv) == 0
    study = tmp_path / "results" / "all"
    record = json.loads((study / "study.json").read_text())
    assert record["regimes"] == ["upstream", "scratch", "decoder", "full"]
    # The study's upstream is the cached one this module's fixture pretrained with the same settings.
    assert f"reusing pretrained tiny upstream: {data.upstream_dir}" in capsys.readouterr().out

    # Every regime's trials got the training and validation data and no test split; the regimes that start from
    # the upstream got it, and scratch (random init, searching while the upstream is made) did not.
    assert sorted(handed) == ["train_decoder", "train_full", "train_scratch", "train_upstream"]
    for name, shipped in handed.items():
        assert shipped.test is None, name
        assert len(shipped.validation) == len(data.validation) and len(shipped.train) == len(data.train), name
        if name == "train_scratch":
            assert shipped.upstream is None
        else:
            assert _same(shipped.upstream, data.upstream, data.upstream) == [], name

    best = {r: json.loads((study / r / "best.json").read_text()) for r in record["regimes"]}
    for regime, row in best.items():  # each scored once on test
        assert row["test_pairs"] > 0 and (study / regime / "test.hyp.txt").exists(), regime

    # upstream: one evaluation of the upstream as it is (no checkpoint), its score the upstream's own.
    up = best["upstream"]
    assert up["checkpoint"] is None and up["epochs_run"] == 0 == up["best_epoch"] and up["trainable_params"] == 0
    lines = [json.loads(line) for p in (study / "upstream").glob("*/result.json") for line in p.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0]
    model, _ = build_model(config.replace(regime="upstream"), data.tokenizer, data.upstream)
    assert lines[0]["val_loss"] == pytest.approx(
        score_split(model, data.validation, data.tokenizer, config, torch.device("cpu"))[0]["val_loss"], rel=1e-6)

    # decoder, as trained in a Ray trial and checkpointed: the encoder is the upstream's, bit for bit — which a
    # trial could only produce if it received the pretrained weights — and the decoder moved.
    decoder = load_checkpoint(best["decoder"]["checkpoint"])["model"]
    encoder_names = [n for n in data.upstream if _is_encoder(n)]
    decoder_names = [n for n in data.upstream if _is_decoder(n)]
    assert _same(decoder, data.upstream, encoder_names) == []
    assert _same(decoder, data.upstream, decoder_names) == decoder_names
    full = load_checkpoint(best["full"]["checkpoint"])["model"]
    assert _same(full, data.upstream, data.upstream) == list(data.upstream)
    # full and decoder started from the upstream, scratch did not: after the same two epochs the pretrained
    # regimes' weights are far closer to the upstream's than scratch's are.
    scratch = load_checkpoint(best["scratch"]["checkpoint"])["model"]

    def distance(state: dict) -> float:
        return sum(float((state[n] - data.upstream[n]).norm()) for n in encoder_names if n != "lm_head.weight")

    assert distance(full) < 0.5 * distance(scratch)

    # What the upstream saw, as the study recorded it and as the report and the model cards say it.
    from study.analysis.report import findings
    from study.analyze import load

    assert record["upstream"]["family"] == "tiny" and record["upstream"]["used_by"] == ["upstream", "decoder", "full"]
    [said] = [s for s in findings(load(study)) if s.startswith("`upstream`")]
    assert f"scored {best['upstream']['test_bleu']:.2f} test BLEU" in said
    assert "never a sentence beside its translation" in said and "`upstream` is zero-shot in the task's sense" in said
    assert "never a sentence beside its translation" in (study / "full" / "model" / "README.md").read_text()
    assert "None: a random initialisation" in (study / "scratch" / "model" / "README.md").read_text()
