"""The one configuration object of a trial, the study presets, and the error every CLI turns into one line.

A `Config` is built once (from CLI flags, a preset, or Python), then flows whole: the driver hands it
to every trial, a trial overrides only its searched fields (`lr`, `batch_size`, `num_beams`, ...) with
`Config.replace`, and the result directory records it as JSON. Keeping a single flat dataclass (instead
of one per concern) means a newcomer reads every knob of the study in one place.

Each field carries its own `--help` line and its *stage* in `dataclasses.field(metadata=...)`:
- `data`: what pairs are read and how they are cleaned, split and tokenized (shared by every trial);
- `model`: the architecture and the pretrained upstream (shared by every trial);
- `trial`: what a trial may set for itself — the search space may search or fix any of these;
- `where`: where files go.
A Config is checked when it is made (`__post_init__`): an invalid one cannot exist.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PREFIX = "translate English to French: "
STAGES = ("data", "model", "trial", "where")


class StudyError(Exception):
    """A user-facing error: bad input, a missing file, an impossible setting.

    CLIs print `error: <message>` on one line and exit with status 2 (`study.cli.run_cli`); the message
    must say what is wrong and what to do about it.
    """


def default_cache_dir() -> str:
    """Where tokenized data, trained tokenizers and the pretrained tiny upstream are cached."""
    env = os.environ.get("T5STUDY_CACHE")
    if env:
        return str(Path(env).expanduser().resolve())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "t5-regime-study")


def _field(default: Any, stage: str, help: str, *, positive: bool = False, factory: Any = None) -> Any:
    metadata = {"stage": stage, "help": help, "positive": positive}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    # --- data -----------------------------------------------------------------------------------
    data: str = _field("sample", "data", "pairs to use: a TSV/CSV/JSONL/Parquet file, hf:NAME[:CONFIG], or 'sample' (bundled corpus)")
    src_col: str | None = _field(None, "data", "name of the English column, if it is not found automatically")
    tgt_col: str | None = _field(None, "data", "name of the French column, if it is not found automatically")
    # T5's task prefix; without it zero-shot T5 does not know the task
    prefix: str = _field(DEFAULT_PREFIX, "data", "task prefix added to every English source (may be empty)")
    max_chars: int = _field(400, "data", "pairs with a side longer than this many characters are dropped or truncated", positive=True)
    overlong: str = _field("drop", "data", "what to do with pairs over a length limit: drop or truncate")
    max_source_tokens: int = _field(96, "data", "source length limit in tokens (prefix included)", positive=True)
    max_target_tokens: int = _field(96, "data", "target length limit in tokens; also caps generation", positive=True)
    split: tuple[float, float, float] = _field((0.8, 0.1, 0.1), "data", "train, validation and test fractions (three numbers adding up to 1)")
    max_train_pairs: int | None = _field(None, "data", "deterministic cap on training pairs, for quick runs", positive=True)
    # "sample", the default, is what every study before the data sweep ran with (a record without the field reads
    # back as it); "nested" is what the sweep (study/sweep.py) needs: its sizes' pairs each a subset of the next's.
    train_subset: str = _field("sample", "data", "how max_train_pairs picks its pairs: sample (a seeded sample of that size, each size drawn on its own) or nested (the first max_train_pairs of one seeded order of the training split, so a smaller cap's pairs are a subset of a larger's)")
    # generation is slow: a seeded subset of the validation split is scored each epoch
    max_eval_pairs: int | None = _field(None, "data", "cap on validation pairs scored each epoch", positive=True)
    max_test_pairs: int | None = _field(None, "data", "cap on test pairs scored once per regime (a seeded random subset)", positive=True)
    data_seed: int = _field(0, "data", "seed of the train/validation/test split")  # never the trial's seed

    # --- model and regime -----------------------------------------------------------------------
    model: str = _field("tiny", "model", "tiny (built offline), a hub id such as t5-small, or a local model directory")
    regime: str = _field("full", "model", "the training regime: upstream, scratch, decoder, full, or one of the extra regimes lora, encoder, frozen-embeddings (see study.model.regimes)")
    # What the `decoder` regime does with T5's shared (tied) token embedding, which is both the
    # encoder's input embedding and the decoder's input embedding and output head:
    #   "frozen"  - frozen with the encoder (default: the encoder really does not change);
    #   "trained" - trained (the encoder's input embedding then changes too);
    #   "untied"  - the decoder gets its own trainable copy; the encoder keeps the frozen original.
    decoder_embedding: str = _field("frozen", "trial", "decoder regime: the tied embedding is frozen, trained, or untied (decoder gets its own copy)")
    # The `lora` regime's adapters (peft): searched like any trial setting in search_spaces/lora.yaml.
    lora_rank: int = _field(8, "trial", "lora regime: rank of each low-rank adapter", positive=True)
    lora_alpha: float = _field(16.0, "trial", "lora regime: adapter scaling numerator (the update is scaled by alpha / rank)", positive=True)
    lora_targets: str = _field("q,v", "trial", "lora regime: attention projections given adapters: q,v or q,k,v,o")

    # --- training -------------------------------------------------------------------------------
    lr: float = _field(1e-3, "trial", "peak learning rate of AdamW (linear warm-up then linear decay)", positive=True)
    batch_size: int = _field(32, "trial", "training batch size, in sentence pairs", positive=True)
    num_beams: int = _field(1, "trial", "beams for generation at evaluation (1 = greedy)", positive=True)
    # Beam search changes decoding, not training: a search scores each checkpoint at every width its space lists
    # (`beams: per_checkpoint`, study.tuning.space) and keeps the best, instead of training a model per width.
    val_beams: tuple[int, ...] = _field((), "trial", "beam widths every validation decodes with, the best reported as val_bleu and its width as num_beams_best (empty: num_beams alone)", factory=tuple)
    epochs: int = _field(3, "trial", "training epochs", positive=True)
    warmup_ratio: float = _field(0.06, "trial", "fraction of the training steps spent warming the learning rate up")
    weight_decay: float = _field(0.01, "trial", "AdamW weight decay")
    max_grad_norm: float = _field(1.0, "trial", "gradient clipping norm")
    eval_batch_size: int = _field(64, "trial", "batch size for evaluation and generation", positive=True)
    seed: int = _field(0, "trial", "seed of the model initialisation, dropout and batch order")
    device: str = _field("auto", "trial", "auto, cpu, cuda or mps")
    # Weights and optimizer state stay fp32 either way; only the matmuls run in bf16 (study.model.device).
    precision: str = _field("auto", "trial", "auto (bf16 on GPUs that have it, and on CPUs with avx512_bf16/AMX where batch size x d_model >= 8192; else fp32), fp32, or bf16")
    torch_threads: int | None = _field(None, "trial", "torch intra-op threads per trial (default: torch's choice)", positive=True)
    # Off by default: on the 2-core CPU compiling the tiny T5 took 40-180 s (untimed against eager there); on a
    # GPU the step is bound by launching T5's many small kernels, which compiling fuses (benchmarks/gpu_check.py).
    compile: bool = _field(False, "trial", "torch.compile the model's forward and loss for training, batches padded to multiples of 32 tokens so that a few static shapes compile once each (off by default: compiling takes minutes, and what it saves is a GPU's kernel launches)")

    # --- tiny model sizes (only for model="tiny") ------------------------------------------------
    tiny_vocab_size: int = _field(2000, "model", "tiny model: SentencePiece vocabulary size (before T5's 100 sentinels)", positive=True)
    tiny_d_model: int = _field(128, "model", "tiny model: hidden size", positive=True)
    tiny_layers: int = _field(3, "model", "tiny model: encoder layers (and as many decoder layers)", positive=True)
    tiny_heads: int = _field(4, "model", "tiny model: attention heads", positive=True)
    tiny_d_ff: int = _field(512, "model", "tiny model: feed-forward size", positive=True)
    # ~3 min on 2 cores; the quick preset uses 800
    pretrain_steps: int = _field(1200, "model", "tiny model: span-corruption pretraining steps of its upstream (cached once made)", positive=True)

    # --- where things go --------------------------------------------------------------------------
    cache_dir: str = _field(None, "where", "where tokenized data, tokenizers and the tiny upstream are cached",
                            factory=default_cache_dir)

    def __post_init__(self) -> None:
        if isinstance(self.split, list):
            self.split = tuple(self.split)
        if isinstance(self.val_beams, list):
            self.val_beams = tuple(self.val_beams)
        self._check()

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        d["val_beams"] = list(self.val_beams)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise StudyError(f"unknown config keys {unknown}; known keys are {sorted(FIELDS)}")
        try:
            return cls(**d)
        except TypeError as err:
            raise StudyError(f"invalid config: {err}") from err

    def _check(self) -> None:
        """Reject settings that cannot work, with a message that says what to change."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _number_kind(f)
            if str(f.type) == "bool" and not isinstance(value, bool):
                raise StudyError(f"{f.name} must be true or false, got {value!r}")
            if kind is None or (value is None and f.default is None):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    kind is int and not float(value).is_integer()) or not math.isfinite(value):
                raise StudyError(f"{f.name} must be {'a number' if kind is float else 'a whole number'}, got {value!r}")
            if f.metadata.get("positive") and not value > 0:
                raise StudyError(f"{f.name} must be positive{' (or unset)' if f.default is None else ''}, got {value}")
        if len(self.split) != 3 or any(not isinstance(x, (int, float)) or x < 0 for x in self.split):
            raise StudyError(f"split must be three non-negative fractions, got {self.split}")
        if not isinstance(self.val_beams, tuple) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                                          for w in self.val_beams):
            raise StudyError(f"val_beams must be whole numbers of beams, at least 1, got {self.val_beams!r}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise StudyError(f"split fractions must add up to 1, got {self.split} (sum {sum(self.split):g})")
        if self.split[1] <= 0 or self.split[2] <= 0:
            raise StudyError(f"validation and test fractions must be > 0, got {self.split}")
        if not isinstance(self.regime, str) or not self.regime:
            raise StudyError(f"regime must be a regime's name, got {self.regime!r}")
        choices = {"overlong": ("drop", "truncate"), "decoder_embedding": ("frozen", "trained", "untied"),
                   "train_subset": ("sample", "nested"), "device": ("auto", "cpu", "cuda", "mps"), "lora_targets": ("q,v", "q,k,v,o"),
                   "precision": ("auto", "fp32", "bf16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise StudyError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}


def _number_kind(f: dataclasses.Field) -> type | None:
    text = str(f.type)
    if text.startswith("float"):
        return float
    if text.startswith("int"):
        return int
    return None


def fields_of_stage(*stages: str) -> list[str]:
    """Names of the Config fields of these stages, in declaration order."""
    return [name for name, f in FIELDS.items() if f.metadata["stage"] in stages]


# Fields a trial may set (search or fix in a search space); the others define what every trial shares.
PER_TRIAL = frozenset(fields_of_stage("trial"))


# --- the budget of a study's search, and presets: a Config and a budget; explicit flags override them -------


@dataclass(frozen=True)
class Budget:
    """How much searching a study does per regime, and with which resources (study.json records it).

    Complete when made: a field the cluster decides is None until `tuning.runner.finish_budget`, once Ray is up,
    returns a new Budget with it filled in; nothing changes a Budget in place."""

    num_samples: int
    max_epochs: int
    max_concurrent: int | None  # trials running at once; None: what the cluster's resources allow
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: 1 if the cluster has GPUs, else 0
    grace_period: int | None
    reduction_factor: int | None
    max_failures: int
    searcher: str = "tpe"  # tpe | random (both record every trial in optuna.db)
    scheduler: str = "asha"  # asha | none (no early stopping)
    # runs of each regime's best configuration (its search's seed + seeds-1 re-runs) behind its test mean ± sd
    seeds: int = 1
    # every regime's sampler seeded with the study seed (common random numbers) rather than a per-regime seed
    same_draws: bool = False
    # every checkpoint kept (--keep-checkpoints) instead of only what resuming and test scoring need
    keep_checkpoints: bool = False
    # regimes searched side by side, sharing the trial slots (study.run sets the number; None: all of them)
    regimes_at_once: int | None = None


PRESETS: dict[str, dict] = {
    "quick": {
        # Sized to finish pretraining + all four regimes in about 10 minutes on 2 CPU cores (measured: docs/search.md).
        # 8 trials per trained regime: the search space's ladder of 5 learning rates, then TPE; ASHA stops the weak
        # (search_spaces/*.yaml, chosen on the replay: docs/measurements/search_replay_quick.json).
        "config": dict(data="sample", model="tiny", max_train_pairs=2000, max_eval_pairs=200, max_test_pairs=1000,
                       epochs=3, eval_batch_size=100, pretrain_steps=800),
        # seeds: the search winner's run and 3 fresh runs of each best configuration, each trained up to the best
        # trial's selected epoch: the verdict's test uses the fresh runs alone, and 2 of them can only call gaps of
        # ~10 BLEU (docs/statistics.md)
        "num_samples": 8, "max_concurrent": None, "needs_data": False, "seeds": 4,
    },
    "paper": {  # the original experiment's scale: t5-small, 10 epochs; meant for GPUs
        "config": dict(model="t5-small", epochs=10, max_eval_pairs=2000, eval_batch_size=128),
        "num_samples": 8, "max_concurrent": None, "needs_data": True, "seeds": 3,
    },
}


# --- command-line flags, one per field ----------------------------------------------------------------------


def add_config_flags(parser: Any, names: list[str] | None = None) -> None:
    """Add a `--flag-name` per Config field (or per name in `names`); flags left out do not appear in the
    parsed namespace. Leaving absent flags out (argparse.SUPPRESS) is what lets explicit flags override a
    preset and nothing else."""
    import argparse

    for name, f in FIELDS.items():
        if names is not None and name not in names:
            continue
        flag = "--" + name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "see docs"
        if name == "split":
            parser.add_argument(flag, type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                                default=argparse.SUPPRESS, help=f.metadata["help"])
            continue
        if name == "val_beams":
            parser.add_argument(flag, dest=name, type=int, nargs="+", metavar="BEAMS", default=argparse.SUPPRESS,
                                help=f.metadata["help"])
            continue
        if str(f.type) == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{f.metadata['help']} (default: {'on' if default else 'off'})")
            continue
        kind = _number_kind(f) or str
        parser.add_argument(flag, dest=name, type=kind, default=argparse.SUPPRESS,
                            help=f"{f.metadata['help']} (default: {default})")


def config_from_flags(namespace: Any, base: Config | None = None) -> Config:
    """`base` (or the defaults) with every flag the user gave applied on top."""
    changes = {k: v for k, v in vars(namespace).items() if k in FIELDS}
    if "split" in changes:
        changes["split"] = tuple(changes["split"])
    return (base or Config()).replace(**changes)
