"""The `paper` preset's code path, on CPU at a tiny budget: what GPU users run (t5-small's configuration and
tokenizer from a hub-style model directory, real sentence pairs), end to end, in CI.

`../shared/t5-small` has t5-small's configuration and tokenizer but no weights, so `scratch` (a random init of
that configuration) runs, and a pretrained regime on it must fail with one line before any trial starts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_PAIRS, SHARED_T5
from transformers import T5Config

from study.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]
needs_shared = pytest.mark.skipif(not (SHARED_T5 / "config.json").exists() or not SHARED_PAIRS.exists(),
                                  reason=f"{SHARED_T5} or {SHARED_PAIRS} not present")
PAIRS = 60  # a few dozen: 48 to train on, 6 to validate, 6 to test


@pytest.fixture
def real_pairs(tmp_path) -> Path:
    """PAIRS Tatoeba pairs spread over the whole file (sorted by length: short and long sentences both)."""
    lines = SHARED_PAIRS.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines[:: len(lines) // PAIRS][:PAIRS]) + "\n", encoding="utf-8")
    return path


def paper_argv(regime: str, model: Path, data: Path, tmp_path: Path) -> list[str]:
    return ["--preset", "paper", "--model", str(model), "--regime", regime, "--data", str(data),
            "--results", str(tmp_path / "results"), "--name", "paper-cpu", "--cache-dir", str(tmp_path / "cache"),
            "--num-samples", "1", "--max-epochs", "1", "--seeds", "1", "--max-eval-pairs", "6",
            "--max-test-pairs", "6", "--gpus-per-trial", "0", "--max-concurrent", "1", "--no-analysis"]


def _run_paper_scratch(model: Path, real_pairs: Path, tmp_path: Path) -> Path:
    """`--preset paper --regime scratch` on `model`, in a driver of its own as a user runs it (its Ray stops with
    it); returns the study's folder."""
    proc = subprocess.run([sys.executable, "-m", "study.run", *paper_argv("scratch", model, real_pairs, tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return tmp_path / "results" / "paper-cpu"


@needs_shared
@pytest.mark.slow
def test_paper_preset_trains_scratch_t5_small_on_cpu(real_pairs, tmp_path):
    study_dir = _run_paper_scratch(SHARED_T5, real_pairs, tmp_path)
    record = json.loads((study_dir / "study.json").read_text())
    assert record["preset"] == "paper" and record["config"]["model"] == str(SHARED_T5)
    # what its pretrained weights would have seen: the original T5's mixture, WMT En->Fr included
    assert record["upstream"]["family"] == "t5" and record["upstream"]["translation_seen"] is True
    assert record["upstream"]["used_by"] == []  # scratch alone starts from none of them
    assert record["budget"]["gpus_per_trial"] == 0
    best = json.loads((study_dir / "scratch" / "best.json").read_text())
    # t5-small's architecture exactly (60.5 M parameters with its 32,128-token vocabulary), every one trained.
    expected = T5Config.from_pretrained(SHARED_T5)
    assert (expected.d_model, expected.num_layers, expected.vocab_size) == (512, 6, 32128)
    assert best["total_params"] == best["trainable_params"] == 60_506_624, best
    assert best["test_pairs"] == 6 and best["epochs_run"] == 1
    assert 0 <= best["test_bleu"] <= 100
    # The paper preset's settings reached the trial: its evaluation batch, the flags' caps.
    assert best["config"]["eval_batch_size"] == 128 and best["config"]["max_eval_pairs"] == 6
    summary = pd.read_csv(study_dir / "summary.csv")
    assert list(summary["regime"]) == ["scratch"]
    # The real t5-small tokenizer, not the tiny one trained here: nothing under the cache's tokenizers/.
    assert not (tmp_path / "cache" / "tokenizers").exists() or not any((tmp_path / "cache" / "tokenizers").iterdir())


def _config_only_directory(tmp_path: Path) -> Path:
    """A hub-style model directory with a configuration and no weights, made here (no ../shared needed)."""
    directory = tmp_path / "config-only"
    T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, vocab_size=128).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("regime", ["full", "decoder", "upstream", "all"])
@pytest.mark.parametrize("model", ["shared", "config-only"])
def test_pretrained_regime_on_a_directory_without_weights_fails_before_any_trial(regime, model, tmp_path, capsys):
    import ray

    ray.shutdown()  # an in-process study that ran earlier in this worker keeps its local Ray up (start_ray)
    if model == "shared":
        if not (SHARED_T5 / "config.json").exists():
            pytest.skip(f"{SHARED_T5} not present")
        directory = SHARED_T5
    else:
        directory = _config_only_directory(tmp_path)
    data = tmp_path / "pairs.tsv"
    data.write_text("Go.\tVa !\n", encoding="utf-8")  # never read: the check comes first
    code = run_main(paper_argv(regime, directory, data, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "starts from pretrained weights" in err[0] and str(directory) in err[0], err
    assert not (tmp_path / "results").exists()  # nothing written
    assert not ray.is_initialized()  # and no Ray started, so no trial either


# google/t5-v1_1-small's config.json as the hub has it, scaled down to train in seconds on CPU: gated-GELU,
# `tie_word_embeddings: false` (an output head of its own), no name of a known checkpoint.
V1_1_TINY = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 32, "d_kv": 8,
             "d_ff": 48, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "vocab_size": 32128,
             "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
             "dropout_rate": 0.1, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
             "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "is_encoder_decoder": True}


def _v1_1_shaped_directory(tmp_path: Path) -> Path:
    """A T5 v1.1-shaped model directory, configuration and t5-small's tokenizer (the same SentencePiece model as
    v1.1's), no weights: what `--model google/t5-v1_1-small` downloads, minus the weights and the sizes."""
    directory = tmp_path / "t5-v1_1-shaped"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(V1_1_TINY), encoding="utf-8")
    for name in ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(SHARED_T5 / name, directory / name)
    return directory


@needs_shared
@pytest.mark.slow
def test_paper_preset_trains_scratch_on_a_t5_v1_1_shaped_config_on_cpu(real_pairs, tmp_path):
    """The paper path with T5 v1.1's layout: `scratch` is a random init of the untied architecture (its own
    output head, every weight trained), and the exported model reloads as that architecture."""
    from transformers import T5ForConditionalGeneration

    study_dir = _run_paper_scratch(_v1_1_shaped_directory(tmp_path), real_pairs, tmp_path)
    c = V1_1_TINY
    d, inner, vocab = c["d_model"], c["num_heads"] * c["d_kv"], c["vocab_size"]
    gated_ff, bias = 3 * d * c["d_ff"], c["relative_attention_num_buckets"] * c["num_heads"]
    encoder = c["num_layers"] * (4 * d * inner + gated_ff + 2 * d) + bias + d
    decoder = c["num_decoder_layers"] * (8 * d * inner + gated_ff + 3 * d) + bias + d
    best = json.loads((study_dir / "scratch" / "best.json").read_text())
    assert best["total_params"] == best["trainable_params"] == 2 * vocab * d + encoder + decoder, best
    assert best["test_pairs"] == 6 and 0 <= best["test_bleu"] <= 100
    record = json.loads((study_dir / "study.json").read_text())
    # shapes alone do not say what weights saw (Flan-T5 shares them): unknown, with the layout named
    assert record["upstream"]["family"] == "unknown" and "T5 v1.1 layout" in record["upstream"]["evidence"]
    exported = T5ForConditionalGeneration.from_pretrained(study_dir / "scratch" / "model")
    assert exported.lm_head.weight is not exported.shared.weight and exported.config.scale_decoder_outputs is False
    assert sum(p.numel() for p in exported.parameters()) == best["total_params"]
    card = (study_dir / "scratch" / "model" / "README.md").read_text()
    assert "None: a random initialisation of" in card
