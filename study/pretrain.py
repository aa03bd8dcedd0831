"""Offline upstream for the `tiny` model (T5 span-corruption pretraining) — not built yet."""

from __future__ import annotations

from pathlib import Path

from study.config import Config, StudyError


def ensure_upstream(config: Config, tokenizer) -> Path:
    raise StudyError(
        "no pretrained tiny upstream exists yet (offline pretraining is not built): regime "
        f"{config.regime!r} needs pretrained weights; use --regime scratch, or --model with a local pretrained T5 directory"
    )
