"""One t5-small `scratch` epoch on a GPU through the project's own single-trial path, then its validation
generation: seconds for each, tokens/s and peak memory (issue 17.6).

    python benchmarks/gpu_check.py --data ../shared/data/fra.txt --model ../shared/t5-small

Runs from a copy of the working tree with neither network nor Ray: the pairs and t5-small's config and
tokenizer are paths (the `scratch` regime only needs the architecture, so a directory without weights
does), and the trial is `study.trial.run_single` — the loop every Tune trial runs — in bf16 autocast.
The original notebook took 456–825 s per epoch on an RTX 6000 Ada; the target on a modern GPU is ≤ 60 s
for the epoch including validation generation. On a CPU it runs too (slowly; use --max-train-pairs), so
that it is known to work before a GPU is rented.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

# Before transformers is imported: never reach for the hub, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if __package__ in (None, ""):  # run as a script: make `study` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import SHARED_T5, cli, finish, format_table, model_spec, run_info, target_met  # noqa: E402
from study.config import PRESETS, Config, StudyError  # noqa: E402
from study.model.device import autocast_dtype, pick_device  # noqa: E402
from study.training.upstream import prepare_data_and_upstream  # noqa: E402
from study.trial import run_single  # noqa: E402

TARGET_EPOCH_S = 60.0
PAPER = PRESETS["paper"]["config"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED_T5.parents[0] / "data" / "fra.txt"),
                   help="the pairs file (default ../shared/data/fra.txt)")
    p.add_argument("--model", default=str(SHARED_T5),
                   help="a model directory with config.json and a tokenizer; no weights needed (default ../shared/t5-small)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size in pairs (default 32)")
    p.add_argument("--eval-batch-size", type=int, default=PAPER["eval_batch_size"],
                   help=f"generation batch size (default {PAPER['eval_batch_size']}, the paper preset's)")
    p.add_argument("--max-train-pairs", type=int, help="cap on training pairs (default: the whole training split)")
    p.add_argument("--max-eval-pairs", type=int, default=PAPER["max_eval_pairs"],
                   help=f"validation pairs generated (default {PAPER['max_eval_pairs']}, the paper preset's)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32", "auto"], help="autocast (default bf16)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cache-dir", help="cache of the tokenized data (default: the study's cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/gpu_check.json)")
    return p


def peak_memory_gb(device: torch.device) -> dict:
    """The accelerator's peak allocated memory (CUDA), and the process's peak resident memory."""
    out = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # Linux: KiB
    if device.type == "cuda":
        out["peak_gpu_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["peak_gpu_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2**30
    return out


def run(args: argparse.Namespace) -> int:
    if not Path(args.data).is_file():
        raise StudyError(f"--data {args.data}: no such file; pass the pairs file (e.g. ../shared/data/fra.txt)")
    config = Config(data=str(Path(args.data).resolve()), model=model_spec(args.model), regime="scratch",
                    epochs=1, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                    max_train_pairs=args.max_train_pairs, max_eval_pairs=args.max_eval_pairs,
                    precision=args.precision, device=args.device, seed=args.seed, torch_threads=args.threads,
                    **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    device = pick_device(config.device)
    start = time.perf_counter()
    data = prepare_data_and_upstream(config, need_upstream=False)
    prepare_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    [epoch] = run_single(config, data=data)
    # fit times the training pass and reports real target tokens/s; the rest of the epoch is validation.
    target_tokens = sum(len(labels) for labels in data.train["labels"])
    source_tokens = sum(len(ids) for ids in data.train["input_ids"])
    train_s = target_tokens / epoch["train_tokens_per_s"]
    validation_s = epoch["epoch_time_s"] - train_s
    dtype = autocast_dtype(device, config.precision)
    record = {
        "benchmark": "gpu_check", **run_info(args, device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "autocast": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "model": config.model, "train_pairs": len(data.train), "validation_pairs": len(data.validation),
        "batch_size": config.batch_size, "eval_batch_size": config.eval_batch_size,
        "prepare_s": prepare_s, "train_s": train_s, "validation_s": validation_s, "epoch_s": epoch["epoch_time_s"],
        "train_target_tokens_per_s": epoch["train_tokens_per_s"],
        "train_tokens_per_s": (source_tokens + target_tokens) / train_s,
        "validation_pairs_per_s": len(data.validation) / validation_s,
        **peak_memory_gb(device),
        "val_loss": epoch["val_loss"], "val_bleu": epoch["val_bleu"],
        # The target is for the whole training split; a capped run only shows that the script works.
        "target_epoch_s": TARGET_EPOCH_S,
        "target_met": None if args.max_train_pairs else target_met(TARGET_EPOCH_S / epoch["epoch_time_s"], 1.0),
    }
    return finish(args, "gpu_check", record, print_report)


def print_report(r: dict) -> None:
    print(f"\n{Path(r['model']).name} scratch, 1 epoch, {r['autocast']} autocast on {r['gpu'] or r['device']}")
    print(format_table(["part", "seconds", "throughput"], [
        ["train", r["train_s"], f"{r['train_tokens_per_s']:,.0f} tokens/s ({r['train_target_tokens_per_s']:,.0f} target)"],
        ["validation generation", r["validation_s"], f"{r['validation_pairs_per_s']:,.1f} pairs/s"],
        ["epoch", r["epoch_s"], f"target <= {r['target_epoch_s']:.0f} s: "
                                + {True: "met", False: "not met", None: "n/a (training split capped)"}[r["target_met"]]],
    ]))
    memory = f"peak RSS {r['peak_rss_gb']:.2f} GB"
    if "peak_gpu_allocated_gb" in r:
        memory += f", peak GPU {r['peak_gpu_allocated_gb']:.2f} GB allocated ({r['peak_gpu_reserved_gb']:.2f} reserved)"
    print(memory)


def main(argv: list[str] | None = None) -> int:
    return cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
