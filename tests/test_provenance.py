"""What the upstream saw, per model family: the report's upstream sentence and the model card say it, from the
table in study/model/provenance.py (hub ids by name, local directories by their config.json or pretrain.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_T5

from study.analysis.load import StudyAnalysis
from study.analysis.report import findings
from study.config import Config
from study.model.provenance import describe
from study.outputs.export import model_card

SAW_MIXTURE = "WMT English→French behind the prefix `translate English to French: `"
NOT_ZERO_SHOT = "So `upstream` measures that supervised translation training on this corpus, not zero-shot"
ZERO_SHOT = "It never trained on a translation: `upstream` is zero-shot in the task's sense"
UNKNOWN = "is not known to this project"


def _analysis(tmp_path: Path, record: dict, regimes: tuple[str, ...] = ("upstream",)) -> StudyAnalysis:
    comparison = pd.DataFrame([{"regime": r, "state": "finished", "test_bleu": 1.5 + i, "test_loss": 3.0,
                                "trials": 1, "search_wall_s": 10.0, "trial_wall_s": 10.0, "running": 0,
                                "pending": 0, "errored": 0} for i, r in enumerate(regimes)])
    return StudyAnalysis(tmp_path, record, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), comparison, {})


def _upstream_sentence(tmp_path: Path, model: str, with_record: bool = True) -> str:
    """The report's bullet about the upstream for a study of `model` (study.json's `upstream` as a study
    records it, or, for a study recorded before that field, found again from the model's name)."""
    record = {"config": {"model": model}}
    if with_record:
        record["upstream"] = {**describe(model), "used_by": ["upstream"]}
    [line] = [s for s in findings(_analysis(tmp_path, record)) if s.startswith("`upstream`")]
    assert "scored 1.50 test BLEU" in line
    return line


def _model_dir(root: Path, config: dict, *extra: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "t5", **config}), encoding="utf-8")
    for name in extra:
        (root / name).write_text("{}", encoding="utf-8")
    return root


V1_1_SHAPES = {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "d_model": 512, "num_layers": 8}


@pytest.mark.parametrize("with_record", [True, False])
def test_the_tiny_upstream_saw_only_the_studys_monolingual_training_text(tmp_path, with_record):
    line = _upstream_sentence(tmp_path, "tiny", with_record)
    assert "span-corruption objective only" in line and "never a sentence beside its translation" in line
    assert "never validation or test text" in line and ZERO_SHOT in line


def test_a_study_pretrain_directory_is_the_projects_span_corruption(tmp_path):
    directory = _model_dir(tmp_path / "pretrained", {}, "pretrain.json")
    line = _upstream_sentence(tmp_path, str(directory))
    assert "python -m study.pretrain" in line and "recognised by its pretrain.json" in line and ZERO_SHOT in line


@pytest.mark.parametrize("model", ["t5-small", "t5-base", "google-t5/t5-small", "t5-11b"])
def test_the_original_t5_checkpoints_have_already_seen_the_task(tmp_path, model):
    line = _upstream_sentence(tmp_path, model)
    assert SAW_MIXTURE in line and NOT_ZERO_SHOT in line and "recognised by its hub id" in line
    assert "T5 paper" in line and "google-t5/t5-small" in line  # the sources
    assert "T5 v1.1 (`google/t5-v1_1-small` …, C4 only) measures self-supervised pre-training alone" in line


@pytest.mark.parametrize("model", ["google/t5-v1_1-small", "google/t5-v1_1-base", "google/t5-v1_1-xxl"])
def test_t5_v1_1_saw_c4_only(tmp_path, model):
    line = _upstream_sentence(tmp_path, model)
    assert "C4 only" in line and "no supervised task" in line and ZERO_SHOT in line
    assert "released_checkpoints.md#t511" in line and "huggingface.co/google/t5-v1_1-small" in line


def test_local_directories_are_recognised_by_the_checkpoint_their_config_names(tmp_path):
    t5 = _model_dir(tmp_path / "t5", {"_name_or_path": "t5-small", "feed_forward_proj": "relu"})
    assert NOT_ZERO_SHOT in _upstream_sentence(tmp_path, str(t5))
    # a config saved from a download keeps the download's path: its last part names the checkpoint
    v11 = _model_dir(tmp_path / "v11", {"_name_or_path": "/home/someone/t5/t5-v1_1-small", **V1_1_SHAPES})
    line = _upstream_sentence(tmp_path, str(v11))
    assert "C4 only" in line and "recognised by its config.json's `_name_or_path`, `/home/someone/t5/t5-v1_1-small`" in line


def test_the_shared_t5_small_directory_is_the_original_t5(tmp_path):
    if not (SHARED_T5 / "config.json").exists():
        pytest.skip(f"{SHARED_T5} not present")
    line = _upstream_sentence(tmp_path, str(SHARED_T5))
    assert NOT_ZERO_SHOT in line and "`_name_or_path`, `t5-small`" in line


@pytest.mark.parametrize("model", ["someone/t5-small", "facebook/bart-base", "v11-shaped", "unnamed-t5", "empty"])
def test_any_other_model_is_unknown_and_the_report_says_so(tmp_path, model):
    """Another owner's repository of the same name, another model, and local directories no name identifies:
    shapes alone do not say what was seen (a fine-tuned descendant, or Flan-T5, has T5 v1.1's shapes)."""
    if model == "v11-shaped":
        model = str(_model_dir(tmp_path / "v11", V1_1_SHAPES))
    elif model == "unnamed-t5":
        model = str(_model_dir(tmp_path / "t5", {"_name_or_path": "someone/t5-small", "feed_forward_proj": "relu"}))
    elif model == "empty":
        (tmp_path / "empty").mkdir()
        model = str(tmp_path / "empty")
    line = _upstream_sentence(tmp_path, model)
    assert UNKNOWN in line and "zero-shot" in line and "see the model's own card" in line
    assert SAW_MIXTURE not in line and ZERO_SHOT not in line and NOT_ZERO_SHOT not in line
    if model.endswith("v11"):
        assert "the T5 v1.1 layout (gated-GELU feed-forward, untied output head)" in line
    if model.endswith("/t5"):
        assert "the original T5 layout (ReLU feed-forward, tied output head)" in line


def test_a_study_without_upstream_still_says_what_its_pretrained_regimes_started_from(tmp_path):
    record = {"config": {"model": "t5-small"}, "upstream": {**describe("t5-small"), "used_by": ["full"]}}
    lines = findings(_analysis(tmp_path, record, ("full", "scratch")))
    assert any(s.startswith("The pretrained regimes start from the upstream:") and NOT_ZERO_SHOT in s for s in lines)
    scratch_only = {"config": {"model": "t5-small"}, "upstream": {**describe("t5-small"), "used_by": []}}
    assert not any(UNKNOWN in s or "upstream:" in s for s in findings(_analysis(tmp_path, scratch_only, ("scratch",))))


@pytest.mark.parametrize("model, regime, expected", [
    ("t5-small", "full", NOT_ZERO_SHOT), ("google/t5-v1_1-small", "decoder", "C4 only"),
    ("tiny", "lora", "never a sentence beside its translation"), ("someone/t5", "upstream", UNKNOWN),
    ("google/t5-v1_1-small", "scratch", "None: a random initialisation of `google/t5-v1_1-small`'s configuration"),
])
def test_the_model_card_says_what_its_upstream_saw(model, regime, expected):
    study = {"name": "s", "upstream": describe(model)}
    card = model_card(regime, {"test_bleu": 1.0}, Config(model=model, regime=regime), study, {"train": 1})
    upstream = card.split("## Upstream\n\n", 1)[1].split("\n\n## Data", 1)[0]
    assert expected in upstream
    if regime == "scratch":
        assert "C4" not in upstream
