"""benchmarks/gpu_check.py (issue 46.4), the one prepared GPU command, runs end to end on this CPU with --smoke,
where neither datasets, Ray nor Optuna can be imported: the lent GPU machine has none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_t5_tokenizer, tiny_sentences, write_pairs

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ("datasets", "ray", "optuna", "pyarrow", "pandas")


@pytest.mark.slow
def test_gpu_check_smoke_runs_without_datasets_ray_or_optuna(tmp_path):
    tokenizer_dir = tmp_path / "tokenizer"
    build_t5_tokenizer(tmp_path / "spm", tiny_sentences(2000)).save_pretrained(tokenizer_dir)
    pairs = write_pairs(tmp_path / "pairs.tsv", 120)
    # Every process of the run, the measuring workers too, starts with these modules unimportable.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(f"import sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n")
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--data", str(pairs),
                          "--model", str(tokenizer_dir), "--out", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["settings"]["smoke"] is True
    ways = record["ways"]
    assert set(ways) == {"eager_b4", "eager_b8", "shared_2_b4", "compiled_b4", "compiled_b8"}
    for name in ("eager_b4", "eager_b8", "compiled_b4", "compiled_b8"):
        way = ways[name]
        assert way["steps"] == 3 and way["epoch_s"] > 0 and way["target_tokens_per_s"] > 0, way
        assert way["compile"] is name.startswith("compiled") and way["mean_loss"] > 0
    assert ways["compiled_b8"]["warmup_steps"] == ways["compiled_b8"]["shapes"]  # each shape compiled before timing
    assert [r["batch_size"] for r in ways["shared_2_b4"]["processes_results"]] == [4, 4]
    assert set(record["sharing"]) == {"1", "2"} and record["sharing"]["1"]["gain"] == 1.0
    assert set(record["compile_speedup"]) == {"4", "8"}
    assert record["targets"]["epoch_s_at_batch_128"]["met"] is None  # not measured at batch 128
    assert "process(es)" in run.stdout and f"wrote {out}" in run.stdout


def test_gpu_check_bad_input_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--data", str(tmp_path / "no"),
                          "--model", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "no such file" in run.stderr
