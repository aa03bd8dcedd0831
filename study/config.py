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
REGIME_NAMES = ("upstream", "scratch", "decoder", "full")


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
    max_test_pairs: int | None = None  # cap on test pairs scored once per regime (quick studies only)
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
    pretrain_steps: int = 1200  # span-corruption steps of the tiny upstream (~3 min on 2 cores; quick: 800)

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
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, (int, float)) and not isinstance(default, bool) or f.name in (
                    "max_train_pairs", "max_eval_pairs", "max_test_pairs", "torch_threads"):
                if value is None and default is None:
                    continue
                wanted = float if isinstance(default, float) else int
                if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                        wanted is int and not float(value).is_integer()):
                    raise StudyError(f"{f.name} must be {'a number' if wanted is float else 'a whole number'}, "
                                     f"got {value!r}")
        if len(self.split) != 3 or any(f < 0 for f in self.split):
            raise StudyError(f"split must be three non-negative fractions, got {self.split}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise StudyError(f"split fractions must add up to 1, got {self.split} (sum {sum(self.split):g})")
        if self.split[1] <= 0 or self.split[2] <= 0:
            raise StudyError(f"validation and test fractions must be > 0, got {self.split}")
        for name in ("max_chars", "max_source_tokens", "max_target_tokens", "batch_size", "num_beams",
                     "eval_batch_size", "epochs", "pretrain_steps"):
            if getattr(self, name) <= 0:
                raise StudyError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_train_pairs", "max_eval_pairs", "max_test_pairs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise StudyError(f"{name} must be positive (or unset), got {value}")
        if not self.lr > 0:
            raise StudyError(f"lr must be positive, got {self.lr}")
        if self.regime not in REGIME_NAMES:
            raise StudyError(f"unknown regime {self.regime!r}; choose from {', '.join(REGIME_NAMES)}")
        if self.overlong not in ("drop", "truncate"):
            raise StudyError(f"overlong must be 'drop' or 'truncate', got {self.overlong!r}")
        if self.decoder_embedding not in ("frozen", "trained", "untied"):
            raise StudyError(
                f"decoder_embedding must be 'frozen', 'trained' or 'untied', got {self.decoder_embedding!r}"
            )
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise StudyError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        return self


# One line of --help per field; the CLIs (study.trial, study.run) build their flags from this table.
HELP: dict[str, str] = {
    "data": "pairs to use: a TSV/CSV/JSONL/Parquet file, hf:NAME[:CONFIG], or 'sample' (bundled corpus)",
    "src_col": "name of the English column, if it is not found automatically",
    "tgt_col": "name of the French column, if it is not found automatically",
    "prefix": "task prefix added to every English source (may be empty)",
    "max_chars": "pairs with a side longer than this many characters are dropped or truncated",
    "overlong": "what to do with pairs over a length limit: drop or truncate",
    "max_source_tokens": "source length limit in tokens (prefix included)",
    "max_target_tokens": "target length limit in tokens; also caps generation",
    "split": "train, validation and test fractions (three numbers adding up to 1)",
    "max_train_pairs": "deterministic cap on training pairs, for quick runs",
    "max_eval_pairs": "cap on validation pairs scored each epoch",
    "max_test_pairs": "cap on test pairs scored once per regime (a seeded random subset)",
    "data_seed": "seed of the train/validation/test split",
    "model": "tiny (built offline), a hub id such as t5-small, or a local model directory",
    "regime": "upstream, scratch, decoder or full",
    "decoder_embedding": "decoder regime: the tied embedding is frozen, trained, or untied (decoder gets its own copy)",
    "lr": "peak learning rate of AdamW (linear warm-up then linear decay)",
    "batch_size": "training batch size, in sentence pairs",
    "num_beams": "beams for generation at evaluation (1 = greedy)",
    "epochs": "training epochs",
    "warmup_ratio": "fraction of the training steps spent warming the learning rate up",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient clipping norm",
    "eval_batch_size": "batch size for evaluation and generation",
    "seed": "seed of the model initialisation, dropout and batch order",
    "device": "auto, cpu, cuda or mps",
    "torch_threads": "torch intra-op threads per trial (default: torch's choice)",
    "tiny_vocab_size": "tiny model: SentencePiece vocabulary size (before T5's 100 sentinels)",
    "tiny_d_model": "tiny model: hidden size",
    "tiny_layers": "tiny model: encoder layers (and as many decoder layers)",
    "tiny_heads": "tiny model: attention heads",
    "tiny_d_ff": "tiny model: feed-forward size",
    "pretrain_steps": "tiny model: span-corruption pretraining steps of its upstream (cached once made)",
    "cache_dir": "where tokenized data, tokenizers and the tiny upstream are cached",
}


def add_config_flags(parser: Any, names: list[str] | None = None) -> None:
    """Add a `--flag-name` per Config field; flags left out do not appear in the parsed namespace.

    Leaving absent flags out (argparse.SUPPRESS) is what lets explicit flags override a preset and
    nothing else.
    """
    import argparse

    defaults = Config.__dataclass_fields__
    for f in dataclasses.fields(Config):
        if names is not None and f.name not in names:
            continue
        default = defaults[f.name].default
        flag = "--" + f.name.replace("_", "-")
        if f.name == "split":
            parser.add_argument(flag, type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                                default=argparse.SUPPRESS, help=HELP[f.name])
            continue
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        if isinstance(default, bool):
            kind = bool
        if f.name == "lr":
            kind = float
        parser.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS,
                            help=f"{HELP[f.name]} (default: {default if default is not dataclasses.MISSING else 'see docs'})")


def config_from_flags(namespace: Any, base: Config | None = None) -> Config:
    """`base` (or the defaults) with every flag the user gave applied on top."""
    known = {f.name for f in dataclasses.fields(Config)}
    changes = {k: v for k, v in vars(namespace).items() if k in known}
    if "split" in changes:
        changes["split"] = tuple(changes["split"])
    return (base or Config()).replace(**changes)
