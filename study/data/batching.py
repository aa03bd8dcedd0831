"""Length-grouped batches of tokenized pairs, each padded to its own longest row, and padding statistics.

`make_loader` turns a split from `study.data.encoding.tokenize_splits` (unpadded `input_ids` and `labels`) into
a DataLoader: rows of similar length are grouped (`LengthGroupedBatchSampler`, keyed by `length_keys`) and
each batch is padded only as far as its longest row, labels with -100 so the loss ignores them. Training
(`study.training.loop`), evaluation (`study.metrics.generation`) and the benchmarks all batch through it.
`padding_stats` and `max_length_padding_stats` measure how much of a batch is padding, this way or padded to
the split maximum.

Kept apart from the rest of `study/data/` (loading, cleaning, splitting, tokenizing) because batching is its own
concern, with its own reproducibility rule (the order depends only on the pair (seed, epoch)), and a
newcomer looks for it by name.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch.utils.data import BatchSampler, DataLoader, Sampler
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices whose rows have similar lengths, in a seeded random order.

    With `shuffle`, transformers' `LengthGroupedSampler` permutes the indices and sorts them by length
    inside pools of 50 batches ("megabatches"); consecutive runs of `batch_size` become batches, and the
    batches are shuffled too. The order depends only on the pair (seed, epoch) (see `set_epoch`), so a run
    resumed at epoch k sees exactly the batches of an uninterrupted one; and it is drawn from the pair, not
    from seed + epoch, so that no two seeds ever share an epoch's order (with seed + epoch, seed 1's epoch 1
    was seed 0's epoch 2, and the seed re-runs of a best configuration replayed each other's batches). Without `shuffle` (evaluation), indices
    are sorted by length, longest first; each batch lists the original row indices it holds.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False):
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.lengths:
            return
        if not self.shuffle:
            order = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])
            yield from BatchSampler(order, self.batch_size, self.drop_last)
            return
        generator = torch.Generator().manual_seed(order_seed(self.seed, self.epoch))
        pooled = LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=generator)
        batches = list(BatchSampler(pooled, self.batch_size, self.drop_last))
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def order_seed(seed: int, epoch: int) -> int:
    """The shuffle's seed for one (seed, epoch): numpy's SeedSequence hashes the pair, so distinct pairs give
    unrelated orders (a 64-bit torch seed; Python's modulo keeps a negative seed in range)."""
    return int(np.random.SeedSequence((seed % 2**64, epoch % 2**64)).generate_state(1, np.uint64)[0])


def length_keys(ds: Dataset) -> list[int]:
    """Sort key of each tokenized row for length grouping: source + label length, ties broken by source length.

    Breaking ties matters on short sentences: among rows of equal total length, random order would mix
    (short source, long target) with (long source, short target) and pad both sides of the batch.
    """
    table = ds.select_columns(["input_ids", "labels"]).with_format("arrow")[:]
    source = pc.list_value_length(table["input_ids"])
    total = pc.add(source, pc.list_value_length(table["labels"]))
    scale = (pc.max(source).as_py() or 0) + 1
    return pc.add(pc.multiply(total, scale), source).to_pylist()


def make_loader(ds: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int, *, shuffle: bool,
                seed: int = 0, epoch: int = 0, pad_to_multiple_of: int | None = None) -> DataLoader:
    """Batches of `input_ids`, `attention_mask` and `labels` tensors, each padded to its batch's longest row
    (rounded up to a multiple of `pad_to_multiple_of` tokens, if given: a compiled step's few static shapes).

    Labels are padded with -100 (ignored by the loss). Rows are grouped by length (see
    `LengthGroupedBatchSampler`, reachable as `loader.batch_sampler`); with `shuffle=False` the batches
    go longest first, and `list(loader.batch_sampler)` gives the row indices of each batch.
    """
    sampler = LengthGroupedBatchSampler(length_keys(ds), batch_size, seed=seed, shuffle=shuffle)
    sampler.set_epoch(epoch)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt",
                                      pad_to_multiple_of=pad_to_multiple_of)
    return DataLoader(ds.select_columns(["input_ids", "labels"]).with_format(None), batch_sampler=sampler,
                      collate_fn=collator, num_workers=0)


def padding_stats(batches) -> dict[str, float]:
    """Fraction of padding in batches from `make_loader`: inputs, labels, and both together."""
    input_pad = input_total = label_pad = label_total = 0
    for batch in batches:
        input_pad += int((batch["attention_mask"] == 0).sum())
        input_total += batch["attention_mask"].numel()
        label_pad += int((batch["labels"] == -100).sum())
        label_total += batch["labels"].numel()
    return {"input_padding": input_pad / max(input_total, 1), "label_padding": label_pad / max(label_total, 1),
            "padding": (input_pad + label_pad) / max(input_total + label_total, 1)}


def max_length_padding_stats(ds: Dataset) -> dict[str, float]:
    """The same fractions if every row were padded to the longest source / target of the whole split."""
    table = ds.select_columns(["input_ids", "labels"]).with_format("arrow")[:]
    out, real_all, total_all = {}, 0, 0
    for column, key in (("input_ids", "input_padding"), ("labels", "label_padding")):
        lengths = pc.list_value_length(table[column])
        real, total = pc.sum(lengths).as_py() or 0, (pc.max(lengths).as_py() or 0) * len(ds)
        out[key] = 1 - real / max(total, 1)
        real_all, total_all = real_all + real, total_all + total
    out["padding"] = 1 - real_all / max(total_all, 1)
    return out
