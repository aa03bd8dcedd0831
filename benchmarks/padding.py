"""Padding: how much of what a batch computes is padding, this project's batches vs padding to the corpus maximum.

    python benchmarks/padding.py --data ../shared/data/eng-fra.tsv          # t5-small's tokenizer from ../shared
    python benchmarks/padding.py --model tiny                               # the bundled corpus, tiny tokenizer

On the training split (the project's tokenization: prefix + English + eos, French + eos), at `--batch-size`
(default 64), the share of source positions, label positions and both together that are padding when:

  original       every row is padded to the longest source / target of the whole corpus (all splits, no token
                 limit, at most 512): the notebook's `padding="max_length"` over the corpus;
  split max      every row is padded to the longest row of the training split
                 (`study.data.batching.max_length_padding_stats`);
  random         shuffled batches, each padded to its own longest row (a DataCollator without grouping);
  HF grouped     transformers' LengthGroupedSampler over the *source* lengths (what Seq2SeqTrainer's
                 group_by_length does), each batch padded to its own longest row;
  project        `study.data.batching.make_loader(shuffle=True)`: grouped by source + target length, labels padded
                 with -100 (`study.data.batching.padding_stats` over every batch of one epoch).

"positions per real token" is what padding costs in compute: positions computed / real tokens.
JSON goes to benchmarks/out/padding.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as `python benchmarks/padding.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import StudyError  # noqa: E402
from study.data import batching  # noqa: E402

NAME = "padding"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/padding.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, the notebook's)")
    p.add_argument("--split", default="train", choices=("train", "validation", "test"), help="which split (default train)")
    return p


def stats_from_lengths(source: np.ndarray, target: np.ndarray, batches: list[np.ndarray] | None,
                       source_pad: int | None = None, target_pad: int | None = None) -> dict[str, float]:
    """Padding fractions when each batch (or, with `*_pad`, every row) is padded to a length."""
    if batches is None:
        source_total, target_total = source_pad * len(source), target_pad * len(target)
    else:
        source_total = sum(int(source[b].max()) * len(b) for b in batches)
        target_total = sum(int(target[b].max()) * len(b) for b in batches)
    source_real, target_real = int(source.sum()), int(target.sum())
    return {"input_padding": 1 - source_real / source_total, "label_padding": 1 - target_real / target_total,
            "padding": 1 - (source_real + target_real) / (source_total + target_total)}


def chunks(order: list[int] | np.ndarray, size: int) -> list[np.ndarray]:
    order = np.asarray(order)
    return [order[i:i + size] for i in range(0, len(order), size)]


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


def run(args: argparse.Namespace) -> int:
    from transformers.trainer_pt_utils import LengthGroupedSampler

    common.positive("batch-size", args.batch_size)
    device = common.setup_torch(args)
    bench = common.load_data(args)
    ds = bench.tokenized[args.split]
    if len(ds) == 0:
        raise StudyError(f"the {args.split} split is empty")
    source = np.array([len(r) for r in ds["input_ids"]])
    target = np.array([len(r) for r in ds["labels"]])
    bs = args.batch_size
    rng = np.random.default_rng(args.seed)
    hf_order = list(LengthGroupedSampler(bs, lengths=source.tolist(),
                                         generator=torch.Generator().manual_seed(args.seed)))
    rows = {
        "original": ("original: every row padded to the corpus max",
                     stats_from_lengths(source, target, None, bench.corpus_source_max, bench.corpus_target_max)),
        "split_max": ("every row padded to the split's longest (max_length_padding_stats)",
                      batching.max_length_padding_stats(ds)),
        "random": ("random batches, each padded to its longest", stats_from_lengths(
            source, target, chunks(rng.permutation(len(ds)), bs))),
        "hf_grouped": ("HF LengthGroupedSampler (by source length)", stats_from_lengths(
            source, target, chunks(hf_order, bs))),
        "project": ("this project: make_loader length-grouped batches", batching.padding_stats(
            batching.make_loader(ds, bench.tokenizer, bs, shuffle=True, seed=args.seed, epoch=1))),
    }
    summary = {key: {"label": label, **stats, "positions_per_real_token": 1 / (1 - stats["padding"])}
               for key, (label, stats) in rows.items()}
    record = {
        "benchmark": NAME,
        "settings": {"model": bench.config.model, "tokenizer": bench.model_name, "data": bench.config.data,
                     "split": args.split, "rows": len(ds), "batch_size": bs, "seed": args.seed,
                     "corpus_source_max": bench.corpus_source_max, "corpus_target_max": bench.corpus_target_max,
                     "split_source_max": int(source.max()), "split_target_max": int(target.max()),
                     "mean_source_tokens": float(source.mean()), "mean_target_tokens": float(target.mean())},
        "run": common.run_info(args, device),
        "padding": summary,
        "project_vs_original_positions": summary["original"]["positions_per_real_token"]
        / summary["project"]["positions_per_real_token"],
    }
    return common.finish(args, NAME, record, print_report)


def print_report(record: dict) -> None:
    s = record["settings"]
    print(f"\npadding: {s['tokenizer']} tokenizer, data {s['data']}, {s['rows']} {s['split']} pairs, batch {s['batch_size']}; "
          f"mean source / target {s['mean_source_tokens']:.1f} / {s['mean_target_tokens']:.1f} tokens, corpus max "
          f"{s['corpus_source_max']} / {s['corpus_target_max']}, split max {s['split_source_max']} / {s['split_target_max']}\n")
    rows = [[r["label"], f"{100 * r['input_padding']:.1f}%", f"{100 * r['label_padding']:.1f}%",
             f"{100 * r['padding']:.1f}%", r["positions_per_real_token"]] for r in record["padding"].values()]
    print(common.format_table(["batches", "source padding", "label padding", "all padding", "positions per real token"],
                              rows))
    print(f"the original computes {record['project_vs_original_positions']:.2f}x the positions of this project's batches")


if __name__ == "__main__":
    sys.exit(main())
