"""What the benchmarks share: flags, data, the original notebook's padding and loop, this project's training
loop rebuilt from its own building blocks, timing, tables and the JSON record.

The original notebook (see ../shared/ORIGINAL.md) padded the *whole corpus* to its longest sentence
(at most 512 tokens) once, up front, padded the labels with the pad id (0) instead of -100, and trained
with a bare `AdamW(lr=1e-3)`. `original_tensors` / `original_batches` / `OriginalLoop` rebuild exactly that;
`ProjectLoop` is `study.training.loop.fit`'s training step, line for line, on the project's own `make_loader`
and `autocast` (a test checks it reproduces `fit`'s training loss bit for bit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from study.config import Config, StudyError
from study.data import batching
from study.data import pairs as data_lib
from study.data.prepared import prepare_text
from study.data.tokenize import tokenize_splits
from study.model.device import pick_device, resolve_precision
from study.training.loop import make_optimizer, training_step

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


# ------------------------------------------------------------------------------ the original notebook


def pad_rows(rows: list[list[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-padded (or cut) to `length` with `pad_id`, and their attention mask."""
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:length]
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def original_tensors(sources: list[list[int]], targets: list[list[int]], source_len: int, target_len: int,
                     pad_id: int) -> dict[str, torch.Tensor]:
    """The notebook's data: every row padded to the corpus maximum, labels padded with the pad id (not -100),
    so the loss counts every padding position as a token to predict."""
    input_ids, attention_mask = pad_rows(sources, source_len, pad_id)
    labels, _ = pad_rows(targets, target_len, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def original_batches(tensors: dict[str, torch.Tensor], batch_size: int, seed: int,
                     epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled fixed-size batches of the pre-padded tensors (a `DataLoader(shuffle=True)`)."""
    n = len(tensors["input_ids"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx] for k, v in tensors.items()}


# ---------------------------------------------------------------------------------------------- loops


@dataclass
class StepStats:
    pairs: int
    tokens: int  # real target tokens (labels that are not padding)
    source_tokens: int  # real source tokens (attention mask 1)
    positions: int  # every source and label position computed, padding included
    source_positions: int = 0  # of which source positions (the rest are label positions)

    @classmethod
    def of(cls, batch: dict[str, torch.Tensor], label_pad: int) -> StepStats:
        labels, mask = batch["labels"], batch["attention_mask"]
        return cls(labels.shape[0], int((labels != label_pad).sum()), int(mask.sum()), mask.numel() + labels.numel(),
                   mask.numel())


class OriginalLoop:
    """(a) The notebook's loop: plain AdamW(lr=1e-3), no schedule, no clipping, no autocast;
    `model(input_ids, attention_mask, labels).loss.backward(); opt.step(); opt.zero_grad()`."""

    def __init__(self, model, tensors: dict[str, torch.Tensor], batch_size: int, seed: int, device: torch.device,
                 pad_id: int, lr: float = 1e-3):
        self.model, self.tensors, self.batch_size, self.seed = model, tensors, batch_size, seed
        self.device, self.pad_id = device, pad_id
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.loss_sum, self.steps = 0.0, 0
        model.train()

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        return original_batches(self.tensors, self.batch_size, self.seed)

    def step(self, batch: dict[str, torch.Tensor]) -> StepStats:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.loss_sum += loss.item()
        self.steps += 1
        return StepStats.of(batch, self.pad_id)


class ProjectLoop:
    """(c) this project's loop: `make_optimizer` and `training_step` of `study.training.loop` — the very
    functions `fit` runs — over the project's `make_loader` (length-grouped batches, labels padded with
    -100). `regions=True` labels the step for torch.profiler."""

    def __init__(self, model, train: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config,
                 device: torch.device, total_steps: int, regions: bool = False):
        # `auto` made concrete knowing the model's width, as `fit` does (bf16 for t5-small on a bf16 CPU).
        config = config.replace(precision=resolve_precision(config.precision, device,
                                                            getattr(model.config, "d_model", 0), config.batch_size))
        self.model, self.train, self.tokenizer, self.config, self.device = model, train, tokenizer, config, device
        self.optimizer, self.scheduler = make_optimizer(model, config, total_steps)
        self.regions = regions
        self.loss_sum, self.tokens = 0.0, 0
        model.train()

    def batches(self, epoch: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        return batching.make_loader(self.train, self.tokenizer, self.config.batch_size, shuffle=True,
                                    seed=self.config.seed, epoch=epoch)

    def step(self, batch: dict[str, torch.Tensor]) -> StepStats:
        region = torch.profiler.record_function("bench/step") if self.regions else nullcontext()
        with region:
            loss, n = training_step(self.model, batch, self.optimizer, self.scheduler, self.config, self.device)
        if not math.isfinite(loss):
            raise BenchmarkError(f"non-finite loss at lr {self.config.lr}: the run diverged")
        self.loss_sum += loss * n
        self.tokens += n
        return StepStats.of(batch, -100)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def time_pass(loop, device: torch.device, warmup: bool = True, max_steps: int | None = None) -> dict:
    """One untimed warm-up step on the loop's first batch, then a timed pass over its batches: all of them,
    or the first `max_steps` (the batches of a shuffled epoch, so any run of them is a random sample)."""
    batches = iter(loop.batches())
    if warmup:
        loop.step(next(batches))
    sync(device)
    start = time.perf_counter()
    stats = []
    for batch in batches:
        stats.append(loop.step(batch))
        if max_steps is not None and len(stats) == max_steps:
            break
    sync(device)
    return throughput(time.perf_counter() - start, stats)


def throughput(seconds: float, stats: list[StepStats]) -> dict:
    """Pairs/s and real target tokens/s of timed steps, and the share of computed positions that were padding."""
    seconds = max(seconds, 1e-9)
    pairs, tokens = sum(s.pairs for s in stats), sum(s.tokens for s in stats)
    real, positions = tokens + sum(s.source_tokens for s in stats), sum(s.positions for s in stats)
    return {"seconds": seconds, "steps": len(stats), "pairs": pairs, "tokens": tokens, "positions": positions,
            "source_tokens": sum(s.source_tokens for s in stats),
            "source_positions": sum(s.source_positions for s in stats),
            "pairs_per_s": pairs / seconds, "tokens_per_s": tokens / seconds,
            "padding": 1 - real / positions if positions else None, "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------- FLOPs and the machine's peak


def flop_weights(model) -> dict[str, int]:
    """The matmul parameters a T5 applies per source token (the encoder's blocks) and per target token (the
    decoder's blocks and the output head), and whether each side trains. Embedding lookups are not matmuls
    and are left out; so are attention's score and mixing products, which are small for sentences this
    short (each is ~2 x length x d_model per token and layer, against ~12 x d_model^2)."""
    model = getattr(model, "base_model", model)
    model = getattr(model, "model", model)  # a peft wrapper holds the T5 inside
    encoder = sum(p.numel() for p in model.encoder.block.parameters())
    decoder = sum(p.numel() for p in model.decoder.block.parameters())
    head = model.lm_head.weight.numel()
    return {"encoder": encoder, "decoder_and_head": decoder + head,
            "encoder_trains": any(p.requires_grad for p in model.encoder.parameters())}


def training_flops(weights: dict, source: int, target: int) -> float:
    """Training FLOPs for `source` and `target` token positions: 2 per parameter and token forward, 4 more
    backward (gradients of activations and of weights), i.e. the usual 6 x parameters x tokens; a frozen
    encoder runs forward only (2 x), since nothing before it needs a gradient."""
    encoder_factor = 6 if weights["encoder_trains"] else 2
    return encoder_factor * weights["encoder"] * source + 6 * weights["decoder_and_head"] * target


def flop_rates(weights: dict, run: dict) -> dict:
    """A timed run's training FLOP/s over its real tokens (useful work) and over every position computed,
    padding included (what the hardware did)."""
    useful = training_flops(weights, run["source_tokens"], run["tokens"])
    computed = training_flops(weights, run["source_positions"], run["positions"] - run["source_positions"])
    return {"useful_flops_per_s": useful / run["seconds"], "computed_flops_per_s": computed / run["seconds"]}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """This machine's dense matmul rate (FLOP/s) at the current torch threads: the best of `repeats` timed
    n x n products after a warm-up. The ceiling a training step's matmuls can approach, not exceed."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i:  # the first is the warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


# ----------------------------------------------------------------------------------------- reporting


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def run_info(args: argparse.Namespace, device: torch.device) -> dict:
    from study.results.record import git_commit, versions

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
