"""The `paper` preset's code path, on CPU at a tiny budget: what GPU users run (t5-small's configuration and
tokenizer from a hub-style model directory, real sentence pairs), end to end, in CI.

`../shared/t5-small` has t5-small's configuration and tokenizer but no weights, so `scratch` (a random init of
that configuration) runs, and a pretrained regime on it must fail with one line before any trial starts.
"""

from __future__ import annotations

import json
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


@needs_shared
@pytest.mark.slow
def test_paper_preset_trains_scratch_t5_small_on_cpu(real_pairs, tmp_path):
    # A driver of its own, as a user runs it (and its Ray stops with it).
    proc = subprocess.run([sys.executable, "-m", "study.run", *paper_argv("scratch", SHARED_T5, real_pairs, tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    study_dir = tmp_path / "results" / "paper-cpu"
    record = json.loads((study_dir / "study.json").read_text())
    assert record["preset"] == "paper" and record["config"]["model"] == str(SHARED_T5)
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
