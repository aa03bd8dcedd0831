"""What every benchmark shares: flags, the data loaded as the study loads it, tables and the JSON record.

The training loops the throughput benchmarks time (the original notebook's and this project's), how a timed pass
is measured and its FLOPs live in `benchmarks/loops.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from study.config import Config, StudyError
from study.data import pairs as data_lib
from study.data.encoding import tokenize_splits
from study.data.prepared import prepare_text
from study.model.device import pick_device

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "benchmarks" / "out"
SHARED_T5 = ROOT.parent / "shared" / "t5-small"
ORIGINAL_MAX_LENGTH = 512  # the notebook padded the corpus to its longest sentence, truncating at 512


class BenchmarkError(StudyError):
    """A benchmark that cannot give a meaningful figure (e.g. the loss diverged)."""


# ---------------------------------------------------------------------------------------------- flags


def default_model() -> str:
    """t5-small's architecture from ../shared when present, else the project's tiny model."""
    return str(SHARED_T5) if (SHARED_T5 / "config.json").is_file() else "tiny"


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="sample",
                   help="pairs: a TSV/CSV/JSONL/Parquet file, hf:NAME, or 'sample' (the bundled corpus; default)")
    p.add_argument("--config", "--model", dest="model", default=default_model(),
                   help="a model directory with config.json and a tokenizer (its architecture is randomly "
                        "initialised; no weights needed), or 'tiny' (default: ../shared/t5-small if present, else tiny)")
    p.add_argument("--cache-dir", help="cache of tokenized data and tiny tokenizers (default: the study's cache)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init, the pair sample and batch order")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/<benchmark>.json)")


def setup_torch(args: argparse.Namespace) -> torch.device:
    if args.threads < 1:
        raise StudyError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    return pick_device(args.device)


def positive(name: str, value: int) -> int:
    if value < 1:
        raise StudyError(f"--{name} must be at least 1, got {value}")
    return value


# ----------------------------------------------------------------------------------------------- data


@dataclass
class BenchData:
    config: Config
    tokenizer: PreTrainedTokenizerBase
    splits: DatasetDict  # cleaned text of every split (train not capped)
    tokenized: DatasetDict  # the project's tokenization: prefix + English + eos, French + eos, token limits
    counts: dict = field(default_factory=dict)
    corpus_source_max: int = 0  # the longest source / target of the whole corpus, as the notebook padded to
    corpus_target_max: int = 0

    @property
    def model_name(self) -> str:
        return Path(self.config.model).name

    @property
    def model_label(self) -> str:
        return "tiny" if self.config.model == "tiny" else f"{self.model_name} architecture"


def model_spec(spec: str) -> str:
    if spec == "tiny":
        return spec
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise StudyError(f"--config {spec}: no config.json there; pass a model directory (config.json + "
                         "tokenizer files, e.g. ../shared/t5-small) or --model tiny")
    return str(path.resolve())


def load_data(args: argparse.Namespace, **config_changes: Any) -> BenchData:
    """Load, clean, split and tokenize `--data` exactly as the study does, with `--config`'s tokenizer."""
    config = Config(data=args.data, model=model_spec(args.model), seed=args.seed, **config_changes)
    if getattr(args, "cache_dir", None):
        config = config.replace(cache_dir=str(Path(args.cache_dir).expanduser().resolve()))
    text = prepare_text(config)
    splits, tokenizer, counts = text.splits, text.tokenizer, text.counts
    tokenized, token_counts = tokenize_splits(splits, tokenizer, config)
    source_max, target_max = corpus_max_lengths(splits, tokenizer, config.prefix)
    return BenchData(config, tokenizer, splits, tokenized, {**counts, **token_counts}, source_max, target_max)


def corpus_max_lengths(splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, prefix: str,
                       cap: int = ORIGINAL_MAX_LENGTH) -> tuple[int, int]:
    """The padded lengths of the original notebook: the longest source (`prefix` + English + eos) and target
    (French + eos) over every pair of the corpus, all splits, no token limit, at most `cap` (512)."""
    eos = tokenizer.eos_token_id
    source_max = target_max = 1
    for name in splits:
        en, fr = list(splits[name]["en"]), list(splits[name]["fr"])
        for start in range(0, len(en), 5000):
            sources = tokenizer([prefix + s for s in en[start:start + 5000]])["input_ids"]
            targets = tokenizer(text_target=fr[start:start + 5000])["input_ids"]
            source_max = max([source_max, *(len(s) + (s[-1:] != [eos]) for s in sources)])
            target_max = max([target_max, *(len(t) + (t[-1:] != [eos]) for t in targets)])
    return min(source_max, cap), min(target_max, cap)


def take_pairs(ds: Dataset, n: int, seed: int) -> Dataset:
    """A seeded random `n` rows (file order kept); a split smaller than `n` is repeated to fill it."""
    if len(ds) == 0:
        raise StudyError("the split is empty: nothing to benchmark on")
    if len(ds) >= n:
        return data_lib.cap_pairs(ds, n, seed)
    rng = np.random.default_rng([seed, 3])
    whole, rest = divmod(n, len(ds))
    idx = np.concatenate([np.tile(np.arange(len(ds)), whole), rng.choice(len(ds), size=rest, replace=False)])
    print(f"note: only {len(ds)} pairs; repeating them to make {n}", flush=True)
    return ds.select(np.sort(idx))


def mean_length(rows: Iterable[list[int]]) -> float:
    lengths = [len(r) for r in rows]
    return sum(lengths) / max(len(lengths), 1)


# ----------------------------------------------------------------------------------------- reporting


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def run_info(args: argparse.Namespace, device: torch.device) -> dict:
    from study.outputs.record import git_commit, versions

    return {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device),
            "git_commit": git_commit(), "versions": versions(), "argv": getattr(args, "argv", None)}


def out_path(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) if args.out else OUT_DIR / f"{name}.json"


def write_json(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table; the first column left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def target_met(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def cli(build_parser, run, argv: list[str] | None) -> int:
    """A benchmark's entry point: parse, run, and turn a StudyError into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    try:
        return run(args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def finish(args, name: str, record: dict, print_report) -> int:
    """Write the benchmark's JSON, print its table and where the JSON went."""
    path = write_json(out_path(args, name), record)
    print_report(record)
    print(f"\nwrote {path}")
    return 0
