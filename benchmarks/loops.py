"""The training loops the throughput benchmarks time, how a timed pass is measured, and its FLOPs.

The original notebook (see ../shared/ORIGINAL.md) padded the *whole corpus* to its longest sentence
(at most 512 tokens, `common.corpus_max_lengths`) once, up front, padded the labels with the pad id (0) instead
of -100, and trained with a bare `AdamW(lr=1e-3)`. `original_tensors` / `original_batches` / `OriginalLoop`
rebuild exactly that; `ProjectLoop` is `study.training.loop.fit`'s training step, line for line, on the project's
own `make_loader` and `autocast` (a test checks it reproduces `fit`'s training loss bit for bit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from benchmarks.common import BenchmarkError
from study.config import Config
from study.data import batching
from study.model.device import resolve_precision
from study.training.step import READ_EVERY, StepTally, make_optimizer, training_step

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
    """(c) this project's loop: `make_optimizer`, `training_step` and `StepTally` of `study.training.step` — the
    very functions `fit` runs — over the project's `make_loader` (length-grouped batches, labels padded with
    -100). `regions=True` labels the step for torch.profiler."""

    def __init__(self, model, train: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config,
                 device: torch.device, total_steps: int, regions: bool = False):
        # `auto` made concrete knowing the model's width, as `fit` does (bf16 for t5-small on a bf16 CPU).
        config = config.replace(precision=resolve_precision(config.precision, device,
                                                            getattr(model.config, "d_model", 0), config.batch_size))
        self.model, self.train, self.tokenizer, self.config, self.device = model, train, tokenizer, config, device
        self.optimizer, self.scheduler = make_optimizer(model, config, total_steps)
        self.regions = regions
        self.loss_sum, self.tokens, self.tally = 0.0, 0, StepTally()
        model.train()

    def batches(self, epoch: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        return batching.make_loader(self.train, self.tokenizer, self.config.batch_size, shuffle=True,
                                    seed=self.config.seed, epoch=epoch)

    def step(self, batch: dict[str, torch.Tensor]) -> StepStats:
        region = torch.profiler.record_function("bench/step") if self.regions else nullcontext()
        with region:
            self.tally.add(*training_step(self.model, batch, self.optimizer, self.scheduler, self.config,
                                          self.device))
            if len(self.tally) == READ_EVERY:
                self.read()
        return StepStats.of(batch, -100)

    def read(self) -> None:
        """The losses of the steps since the last read, read at once, as `fit` reads them every `READ_EVERY`
        steps and at the epoch's end (`time_pass` calls it after the last timed step)."""
        for loss, n in self.tally.read():
            if not math.isfinite(loss):
                raise BenchmarkError(f"non-finite loss at lr {self.config.lr}: the run diverged")
            self.loss_sum += loss * n
            self.tokens += n


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
    if hasattr(loop, "read"):  # the project's loop reads its losses once per interval: the last read is timed
        loop.read()
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
