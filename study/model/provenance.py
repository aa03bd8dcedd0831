"""What a model's pretrained weights saw before the study: the known checkpoints, by name, in one table.

Whether `upstream` is zero-shot, and what `full` − `scratch` ("what pre-training buys") measures, depends on
what the starting weights were trained on. The released T5 checkpoints (`t5-small` …) already trained on
supervised WMT English→French with this study's very prefix; T5 v1.1 (`google/t5-v1_1-small` …) saw C4 only;
the project's tiny upstream saw the study's own training text, monolingual. study.json records
`describe(config.model)`; the report and each exported model's card say it in words (`sentence`).

Reads a directory's `config.json` as plain JSON (no transformers, no torch): the analysis imports this.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

TINY = "tiny"  # the spec of the project's own tiny T5 (study.data.tokenizer.TINY; not imported: it loads transformers)
PREFIX = "translate English to French: "  # the English→French prefix of T5's mixture (the study's default prefix)


@dataclass(frozen=True)
class Upstream:
    family: str  # a key of FAMILIES
    saw: str  # what the weights were trained on before this study, as a clause
    translation_seen: bool | None  # whether supervised English→French was among it; None: not known
    source: str  # where that fact comes from


FAMILIES: dict[str, Upstream] = {
    # What the pretraining run reads: study/training/pretraining.py (`ensure_upstream`, `monolingual_corpus`):
    # the whole training split (never validation or test), English and French shuffled by separate seeds.
    "tiny": Upstream(
        "tiny", "T5's span-corruption objective only, pretrained by this project on the study's own training "
        "split: its English and its French sentences shuffled apart, so never a sentence beside its "
        "translation, and never validation or test text", False, "study/training/pretraining.py"),
    # A directory `python -m study.pretrain --out DIR` wrote (it holds pretrain.json): the same run, on the
    # training split of whatever data that command was given (study/pretrain.py).
    "study-pretrain": Upstream(
        "study-pretrain", "T5's span-corruption objective only, pretrained by `python -m study.pretrain` (its "
        "pretrain.json) on the monolingual training text of the data it was run with, never a translation "
        "pair", False, "study/pretrain.py, study/training/pretraining.py"),
    # The original release. Model card (huggingface.co/google-t5/t5-small, "Training Details"): "pre-trained on
    # a multi-task mixture of unsupervised (1.) and supervised tasks (2.)". The T5 paper (Raffel et al. 2020,
    # JMLR 21(140)), section 3.7: the released models were pre-trained on the multi-task mixture, which
    # includes WMT English→French (section 2.3), each task behind a text prefix (section 2.4); the checkpoints'
    # own config.json keeps that prefix, `translate English to French: `, under task_specific_params.
    "t5": Upstream(
        "t5", "T5's multi-task pre-training mixture: C4 span corruption mixed with supervised tasks, among them "
        f"WMT English→French behind the prefix `{PREFIX}`", True,
        "the model card (huggingface.co/google-t5/t5-small) and the T5 paper (Raffel et al. 2020, sections 2.3, "
        "2.4 and 3.7)"),
    # Model card (huggingface.co/google/t5-v1_1-small) and the T5 v1.1 release notes
    # (github.com/google-research/text-to-text-transfer-transformer, released_checkpoints.md#t511):
    # "Pre-trained on C4 only without mixing in the downstream tasks"; GEGLU feed-forward, "no parameter
    # sharing between embedding and classifier layer", dropout off in pre-training.
    "t5-v1.1": Upstream(
        "t5-v1.1", "C4 only, with T5's span-corruption objective, no supervised task mixed in (so never a "
        "translation)", False,
        "the model card (huggingface.co/google/t5-v1_1-small) and the T5 v1.1 release notes "
        "(google-research/text-to-text-transfer-transformer, released_checkpoints.md#t511)"),
    "unknown": Upstream("unknown", "not known to this project (no entry in study/model/provenance.py)", None,
                        "none: read the model's own card"),
}

# Known checkpoints by hub id; the google-t5/ names are the same repositories as the bare ones.
CHECKPOINTS: dict[str, str] = {
    **{f"{org}t5-{size}": "t5" for org in ("", "google-t5/") for size in ("small", "base", "large", "3b", "11b")},
    **{f"google/t5-v1_1-{size}": "t5-v1.1" for size in ("small", "base", "large", "xl", "xxl")},
}


def _by_name(name: str) -> str | None:
    """The family of a hub id, or of a local path ending in a known checkpoint's name (the `_name_or_path` of a
    config saved from a download, e.g. `/home/…/t5-v1_1-small`); never of another owner's repository."""
    if name in CHECKPOINTS:
        return CHECKPOINTS[name]
    if not name.startswith(("/", ".", "~")):
        return None
    bare = name.rstrip("/").rpartition("/")[2]
    return next((family for known, family in CHECKPOINTS.items() if known.rpartition("/")[2] == bare), None)


def _layout(config: dict) -> str:
    """The architecture a configuration describes, for a directory no name identifies."""
    gated = str(config.get("feed_forward_proj", "relu")).startswith("gated")
    untied = config.get("tie_word_embeddings") is False or config.get("scale_decoder_outputs") is False
    if gated and untied:  # Flan-T5 and the LM-adapted T5 have this layout too: it does not say what was seen
        return "the T5 v1.1 layout (gated-GELU feed-forward, untied output head), which fine-tuned descendants share"
    if not gated and not untied:
        return "the original T5 layout (ReLU feed-forward, tied output head), which fine-tuned descendants share"
    return "a T5 layout"


def describe(spec: str) -> dict:
    """What `spec`'s pretrained weights saw, and on what evidence (`evidence`): study.json's `upstream`.

    A hub id is looked up by name. A local directory is recognised by pretrain.json (written by study.pretrain)
    or by the checkpoint its config.json names (`_name_or_path`); by its shapes alone it is reported unknown,
    since a fine-tuned descendant has the same shapes."""
    family, how = None, "not among the checkpoints it knows"
    directory = Path(spec).expanduser()
    if spec == TINY:
        family, how = "tiny", "the spec `tiny`"
    elif directory.is_dir():
        config = _read_config(directory)
        named = str(config.get("_name_or_path") or "")
        if (directory / "pretrain.json").is_file():
            family, how = "study-pretrain", "its pretrain.json"
        elif named and _by_name(named):
            family, how = _by_name(named), f"its config.json's `_name_or_path`, `{named}`"
        elif config:
            how = f"its config.json names no checkpoint it knows, and describes {_layout(config)}"
        else:
            how = "it has no readable config.json"
    elif spec in CHECKPOINTS:
        family, how = CHECKPOINTS[spec], "its hub id"
    info = FAMILIES[family or "unknown"]
    return {"model": spec, **asdict(info), "evidence": how}


def _read_config(directory: Path) -> dict:
    try:
        found = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def sentence(info: dict) -> str:
    """What the upstream saw and what that makes `upstream` and `full` − `scratch` measure, for report and card."""
    model, family = f"`{info.get('model')}`", info.get("family", "unknown")
    if family == "unknown":
        return (f"What {model}'s pretrained weights were trained on is not known to this project "
                f"({info.get('evidence')}): whether `upstream` is zero-shot, and what `full` − `scratch` "
                "measures, depends on it; see the model's own card.")
    what = f"{model}'s pretrained weights saw {info['saw']} (source: {info['source']}; recognised by {info['evidence']})"
    if info.get("translation_seen"):
        return (f"{what}. So `upstream` measures that supervised translation training on this corpus, not zero-shot "
                "transfer, and `full` − `scratch` mixes self-supervised pre-training with supervised English→French "
                "training; T5 v1.1 (`google/t5-v1_1-small` …, C4 only) measures self-supervised pre-training alone.")
    return (f"{what}. It never trained on a translation: `upstream` is zero-shot in the task's sense, and "
            "`full` − `scratch` measures what self-supervised pre-training buys.")
