"""The one configuration object of a trial, and the error type every CLI turns into one clear line.

A `Config` is built once (from CLI flags, a preset, or Python), then flows whole: the driver hands it
to every trial, a trial overrides only the searched fields (`lr`, `batch_size`, `num_beams`) with
`dataclasses.replace`, and the result directory records it as JSON. Keeping a single flat dataclass
(instead of one per concern) means a newcomer reads every knob of the study in one place.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PREFIX = "translate English to French: "


class StudyError(Exception):
    """A user-facing error: bad input, a missing file, an impossible setting.

    CLIs print `error: <message>` on one line and exit with status 2; the message must say what is
    wrong and what to do about it.
    """


def default_cache_dir() -> str:
    """Where tokenized data, trained tokenizers and the pretrained tiny upstream are cached."""
    env = os.environ.get("T5STUDY_CACHE")
    if env:
        return str(Path(env).expanduser().resolve())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "t5-regime-study")


@dataclass
class Config:
    # --- data -----------------------------------------------------------------------------------
    data: str = "sample"  # path to a TSV/CSV/JSONL/Parquet file, "hf:NAME[:CONFIG]", or "sample"
    src_col: str | None = None  # English column, when it cannot be found automatically
    tgt_col: str | None = None  # French column
    prefix: str = DEFAULT_PREFIX  # T5's task prefix; without it zero-shot T5 does not know the task
    max_chars: int = 400  # cleaning: pairs with a side longer than this (characters) ...
    overlong: str = "drop"  # ... and pairs over the token limits are "drop"ped or "truncate"d
    max_source_tokens: int = 96
    max_target_tokens: int = 96
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / validation / test
    max_train_pairs: int | None = None  # deterministic cap on training pairs, for quick studies
    max_eval_pairs: int | None = None  # cap on validation pairs scored each epoch (generation is slow)
    data_seed: int = 0  # the split depends on this, never on the trial's seed

    # --- model and regime -----------------------------------------------------------------------
    model: str = "tiny"  # "tiny", a hub id such as "t5-small", or a local model directory
    regime: str = "full"  # upstream | scratch | decoder | full
    # What the `decoder` regime does with T5's shared (tied) token embedding, which is both the
    # encoder's input embedding and the decoder's input embedding and output head:
    #   "frozen"  - frozen with the encoder (default: the encoder really does not change);
    #   "trained" - trained (the encoder's input embedding then changes too);
    #   "untied"  - the decoder gets its own trainable copy; the encoder keeps the frozen original.
    decoder_embedding: str = "frozen"

    # --- training -------------------------------------------------------------------------------
    lr: float = 1e-3
    batch_size: int = 32
    num_beams: int = 1
    epochs: int = 3
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    torch_threads: int | None = None  # intra-op threads per trial; None: torch's default

    # --- tiny model sizes (only for model="tiny") ------------------------------------------------
    tiny_vocab_size: int = 2000
    tiny_d_model: int = 128
    tiny_layers: int = 3
    tiny_heads: int = 4
    tiny_d_ff: int = 512

    # --- where things go --------------------------------------------------------------------------
    cache_dir: str = field(default_factory=default_cache_dir)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise StudyError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        d = dict(d)
        if "split" in d:
            d["split"] = tuple(d["split"])
        return cls(**d)

    def validate(self) -> Config:
        """Reject settings that cannot work, with a message that says what to change."""
        if len(self.split) != 3 or any(f < 0 for f in self.split):
            raise StudyError(f"split must be three non-negative fractions, got {self.split}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise StudyError(f"split fractions must add up to 1, got {self.split} (sum {sum(self.split):g})")
        if self.split[1] <= 0 or self.split[2] <= 0:
            raise StudyError(f"validation and test fractions must be > 0, got {self.split}")
        for name in ("max_chars", "max_source_tokens", "max_target_tokens", "batch_size", "num_beams",
                     "eval_batch_size", "epochs"):
            if getattr(self, name) <= 0:
                raise StudyError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_train_pairs", "max_eval_pairs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise StudyError(f"{name} must be positive (or unset), got {value}")
        if not self.lr > 0:
            raise StudyError(f"lr must be positive, got {self.lr}")
        if self.overlong not in ("drop", "truncate"):
            raise StudyError(f"overlong must be 'drop' or 'truncate', got {self.overlong!r}")
        if self.decoder_embedding not in ("frozen", "trained", "untied"):
            raise StudyError(
                f"decoder_embedding must be 'frozen', 'trained' or 'untied', got {self.decoder_embedding!r}"
            )
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise StudyError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        return self
