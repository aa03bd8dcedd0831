"""Training throughput: the original notebook's loop vs Hugging Face's Seq2SeqTrainer vs this project's loop.

    python benchmarks/train_throughput.py --data ../shared/data/fra.txt --repeats 1        # t5-small architecture
    python benchmarks/train_throughput.py --data ../shared/data/fra.txt --model tiny      # the tiny model
    python benchmarks/train_throughput.py --ways project --profile --repeats 1   # profile (c) before optimising

The same model (a random init of `--config`'s architecture, one seed, copied for every run) and the same pool
of training pairs: a seeded random sample of the training split, drawn from the whole length distribution
(never the first rows: fra.txt is sorted by length), tokenized once by the project (task prefix + English +
eos, French + eos). The pool holds 200 batches by default, so that length grouping pools 50 batches
("megabatches") exactly as it does in any real epoch of 12,800 pairs or more. Four ways:

(a) original     - the notebook: every row padded to the longest sentence of the *whole corpus* (all splits,
                   at most 512 tokens), labels padded with the pad id 0 (so the loss trains on padding),
                   shuffled fixed-size batches, plain AdamW(lr=1e-3), no schedule, no clipping, no autocast.
                   Every batch has the same shape, so `--original-steps` (default 10) steps measure it. The
                   task prefix is kept by default so that (a) sees the same token ids as the others
                   (`--original-no-prefix` drops it: shorter sources, a faster (a), a conservative ratio).
(b) trainer      - transformers' Seq2SeqTrainer as a user configures it here: length-grouped sampling
                   (`train_sampling_strategy="group_by_length"`, which groups by *source* length) and
                   DataCollatorForSeq2Seq (labels padded with -100); the project's lr, weight decay, warm-up
                   and clipping; no evaluation, saving or logging; its default precision (fp32).
(b) trainer_bf16 - the same with `bf16=True`, where the device computes bf16 natively (else skipped).
(c) project      - `study.training.loop.fit`'s training step from the project's own building blocks
                   (`make_loader`, `make_optimizer`, `training_step`, precision resolved as `fit` does:
                   `--precision auto` is bf16 for t5-small on a bf16 CPU; see `benchmarks.loops.ProjectLoop`;
                   a test checks it reproduces `fit`'s training loss). `--regime decoder` trains only what
                   that regime trains (encoder frozen).

Each way takes one untimed warm-up step, then `--steps` timed steps (default 49: with the warm-up, one
megabatch of the Trainer's epoch, whose batches run longest first inside it; (c) shuffles its batches over
the epoch, so its first steps are a random sample of them). Throughput is pairs/s and *real* target tokens/s
(labels that are not padding); the figure is the median over `--repeats`, the ways interleaved within every
repeat. Against the machine's limit: the matmul rate of an n x n product (fp32 and bf16, the same threads)
and each way's training FLOP/s = 6 x matmul parameters x tokens (see `benchmarks.loops.training_flops`), over
real tokens ("useful") and over every computed position. JSON goes to benchmarks/out/train_throughput.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as `python benchmarks/train_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, loops  # noqa: E402
from study.config import StudyError  # noqa: E402
from study.model.device import PRECISIONS, cpu_has_native_bf16, resolve_precision  # noqa: E402
from study.model.regimes import build_model, get_regime, parameter_counts  # noqa: E402

NAME = "train_throughput"
WAYS = {"original": "(a) original notebook loop", "trainer": "(b) HF Seq2SeqTrainer, group_by_length",
        "trainer_bf16": "(b) the same, bf16=True", "project": "(c) this project (fit's loop)"}
ALIASES = {"a": "original", "b": "trainer", "c": "project"}
TARGETS = {"project_vs_original": 8.0, "project_vs_trainer": 1.1}  # issue 46: c/b >= 1.1 at batch 16 and 64
POOL_BATCHES = 200  # 4 x 50: the most batches transformers' length grouping pools (see get_length_grouped_indices)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/train_throughput.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common.add_common_args(p)
    p.add_argument("--steps", type=int, default=49,
                   help="timed optimizer steps of (b) and (c) per repeat (default 49: with the warm-up, one megabatch)")
    p.add_argument("--original-steps", type=int, default=10,
                   help="timed steps of (a), whose batches all have the corpus maximum's shape (default 10)")
    p.add_argument("--pool-pairs", type=int, default=0,
                   help=f"pairs sampled for the run (default {POOL_BATCHES} batches, so length grouping pools "
                        "50 batches as in a real epoch)")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step, every way (default 64, the notebook's)")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported (default 3)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of (b) and (c); (a) always uses 1e-3")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="(c)'s precision, resolved as a trial resolves it (default auto)")
    p.add_argument("--regime", default="scratch",
                   help="(c) trains the parameters this regime trains (default scratch: all; e.g. decoder)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul that measures the peak")
    p.add_argument("--ways", default="original,trainer,trainer_bf16,project",
                   help="comma list of original,trainer,trainer_bf16,project (or a,b,c)")
    p.add_argument("--original-no-prefix", action="store_true",
                   help="(a) without the task prefix, as in the notebook (default: same token ids as (b) and (c))")
    p.add_argument("--profile", action="store_true",
                   help="afterwards, run torch.profiler over --profile-steps steps of (c) and print the top ops")
    p.add_argument("--profile-steps", type=int, default=5, help="steps profiled (after one warm-up step)")
    p.add_argument("--profile-rows", type=int, default=25, help="rows of the top-ops table")
    return p


def parse_ways(text: str) -> list[str]:
    ways = [ALIASES.get(w.strip(), w.strip()) for w in text.split(",") if w.strip()]
    unknown = [w for w in ways if w not in WAYS]
    if unknown or not ways:
        raise StudyError(f"--ways: unknown {unknown or [text]}; use a comma list of original,trainer,trainer_bf16,project (or a,b,c)")
    return [w for w in WAYS if w in ways]


# ------------------------------------------------------------------------------------------ (b) Trainer


def trainer_unavailable() -> str | None:
    """Why (b) cannot run here, or None: transformers' Trainer needs `accelerate`."""
    from transformers.utils import is_accelerate_available

    if is_accelerate_available():
        return None
    return "transformers' Trainer needs accelerate>=1.1.0, which is not installed (pip install 'accelerate>=1.1.0')"


def bf16_unavailable(device: torch.device) -> str | None:
    """Why (b) with bf16=True cannot run here, or None."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    if device.type == "cpu":
        return None if cpu_has_native_bf16() else "this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
    return f"bf16 is not benchmarked on {device.type}"


def trainer_arguments(output_dir: str, *, steps: int, batch_size: int, config, device: torch.device,
                      bf16: bool = False):
    """Seq2SeqTrainingArguments for (b): length grouping under whichever name this transformers uses."""
    from transformers import Seq2SeqTrainingArguments

    fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    grouping = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
                else {"group_by_length": True})
    warmup = ({"warmup_steps": config.warmup_ratio} if "warmup_ratio" not in fields
              else {"warmup_ratio": config.warmup_ratio})  # transformers 5 takes a float ratio in warmup_steps
    return Seq2SeqTrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=config.lr,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, lr_scheduler_type="linear",
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, use_cpu=device.type == "cpu", bf16=bf16,
        seed=config.seed, **grouping, **warmup)


def time_trainer(model, train, tokenizer, config, device: torch.device, steps: int, bf16: bool = False) -> dict:
    """(b): steps+1 Trainer steps; the first is the warm-up, the time runs from its end to the last step's end."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            loops.sync(device)
            self.ends.append(time.perf_counter())

    class CountingTrainer(Seq2SeqTrainer):
        counts: list[loops.StepStats]

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.counts.append(loops.StepStats.of(inputs, -100))
            return super().training_step(model, inputs, num_items_in_batch)

    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as output_dir:
        args = trainer_arguments(output_dir, steps=steps + 1, batch_size=config.batch_size, config=config,
                                 device=device, bf16=bf16)
        trainer = CountingTrainer(
            model=model, args=args, train_dataset=train.select_columns(["input_ids", "labels"]),
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
            processing_class=tokenizer, callbacks=[timer])
        trainer.counts = []
        for quiet in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(quiet)
        trainer.train()
    if len(timer.ends) != steps + 1 or len(trainer.counts) != steps + 1:
        raise common.BenchmarkError(f"the Trainer ran {len(timer.ends)} steps, expected {steps + 1}")
    return loops.throughput(timer.ends[-1] - timer.ends[0], trainer.counts[1:])


# ------------------------------------------------------------------------------------------- profiling


def profile_project(model, train, tokenizer, config, device: torch.device, steps: int, rows: int) -> dict:
    """torch.profiler over `steps` steps of (c) after one warm-up step: the phases and the top ops."""
    from torch.profiler import ProfilerActivity, profile, record_function

    loop = loops.ProjectLoop(model, train, tokenizer, config, device, total_steps=steps + 1, regions=True)
    batches = iter(loop.batches())
    loop.step(next(batches))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    done = 0
    with profile(activities=activities) as prof:
        while done < steps:
            with record_function("bench/data"):
                batch = next(batches, None)
            if batch is None:  # the sample is shorter than the profile: start another pass
                batches = iter(loop.batches(epoch=2 + done))
                continue
            loop.step(batch)
            done += 1
        loops.sync(device)
    averages = prof.key_averages()
    time_key = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    phases = {e.key.split("/", 1)[1]: getattr(e, time_key) / 1e3 / steps
              for e in averages if e.key.startswith("bench/")}
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = averages.table(sort_by=sort_by, row_limit=rows)
    return {"steps": steps, "phase_ms_per_step": phases, "sort_by": sort_by, "table": table}


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


def run(args: argparse.Namespace) -> int:
    ways = parse_ways(args.ways)
    for name in ("steps", "original_steps", "batch_size", "repeats", "profile_steps", "matmul_size"):
        common.positive(name.replace("_", "-"), getattr(args, name))
    regime = get_regime(args.regime)
    if not regime.trains or regime.adapt is not None:
        raise StudyError(f"--regime {args.regime}: pick a regime that trains T5 parameters themselves "
                         "(scratch, full, decoder, encoder, frozen-embeddings)")
    device = common.setup_torch(args)
    skipped = {}
    for way, reason in (("trainer", trainer_unavailable()), ("trainer_bf16", trainer_unavailable()),
                        ("trainer_bf16", bf16_unavailable(device))):
        if way in ways and reason:
            skipped[way] = reason
            ways.remove(way)
            print(f"skipping {WAYS[way]}: {reason}", file=sys.stderr, flush=True)
    pool = args.pool_pairs or POOL_BATCHES * args.batch_size
    if pool < (max(args.steps, args.original_steps) + 1) * args.batch_size:
        raise StudyError(f"--pool-pairs {pool} is fewer than the (steps + 1) x batch-size pairs the run takes")
    bench = common.load_data(args, batch_size=args.batch_size, lr=args.lr, regime="scratch",
                             precision=args.precision)
    tokenizer, config = bench.tokenizer, bench.config
    sample = common.take_pairs(bench.tokenized["train"], pool, args.seed)

    prefix = "" if args.original_no_prefix else config.prefix
    if args.original_no_prefix:
        sources = tokenizer(list(sample["en"]))["input_ids"]
        source_len, target_len = common.corpus_max_lengths(bench.splits, tokenizer, "")
    else:
        sources, source_len, target_len = list(sample["input_ids"]), bench.corpus_source_max, bench.corpus_target_max
    original = loops.original_tensors(sources, list(sample["labels"]), source_len, target_len, tokenizer.pad_token_id)

    base_model, _ = build_model(config, tokenizer)  # seeded with --seed: every run starts from these weights
    regime.set_trainable(base_model, config)  # a random init trains as fast as the pretrained weights would
    counts = parameter_counts(base_model)
    flop_weights = loops.flop_weights(base_model)
    project_precision = resolve_precision(config.precision, device, base_model.config.d_model, config.batch_size)
    precision = {"original": "fp32", "trainer": "fp32", "trainer_bf16": "bf16", "project": project_precision}
    peaks = {"fp32": loops.matmul_peak(device, torch.float32, args.matmul_size)}
    if "bf16" in precision.values() and not bf16_unavailable(device):
        peaks["bf16"] = loops.matmul_peak(device, torch.bfloat16, args.matmul_size)
    print("matmul peak at", torch.get_num_threads(), "threads:",
          ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()), flush=True)

    results: dict[str, list[dict]] = {w: [] for w in ways}
    for repeat in range(args.repeats):
        for way in ways:
            model = copy.deepcopy(base_model).to(device)
            if way == "original":
                loop = loops.OriginalLoop(model, original, args.batch_size, args.seed, device, tokenizer.pad_token_id)
                result = loops.time_pass(loop, device, max_steps=args.original_steps)
            elif way.startswith("trainer"):
                result = time_trainer(model, sample, tokenizer, config, device, args.steps, bf16=way == "trainer_bf16")
            else:
                loop = loops.ProjectLoop(model, sample, tokenizer, config, device, total_steps=args.steps + 1)
                result = loops.time_pass(loop, device, max_steps=args.steps)
            result.update(loops.flop_rates(flop_weights, result))
            results[way].append(result)
            print(f"repeat {repeat + 1}/{args.repeats}  {WAYS[way]:<40} {result['pairs_per_s']:10.1f} pairs/s "
                  f"{result['tokens_per_s']:10.1f} tokens/s  ({result['seconds']:.2f} s)", flush=True)
            del model
            gc.collect()

    summary = {}
    for w in ways:
        useful = common.median(r["useful_flops_per_s"] for r in results[w])
        computed = common.median(r["computed_flops_per_s"] for r in results[w])
        peak = peaks.get(precision[w])
        summary[w] = {"label": WAYS[w], "precision": precision[w],
                      "pairs_per_s": common.median(r["pairs_per_s"] for r in results[w]),
                      "tokens_per_s": common.median(r["tokens_per_s"] for r in results[w]),
                      "padding": results[w][0]["padding"],
                      "positions_per_step": results[w][0]["positions"] / results[w][0]["steps"],
                      "useful_flops_per_s": useful, "computed_flops_per_s": computed,
                      "share_of_peak": common.ratio(useful, peak), "computed_share_of_peak": common.ratio(computed, peak),
                      "repeats": results[w]}
    ratios = {}
    trainers = [w for w in ("trainer", "trainer_bf16") if w in summary]
    best_trainer = max(trainers, key=lambda w: summary[w]["tokens_per_s"]) if trainers else None
    for key, other in (("project_vs_original", "original"), ("project_vs_trainer", best_trainer)):
        if "project" in summary and other in summary:
            ratios[key] = {unit: common.ratio(summary["project"][unit], summary[other][unit])
                           for unit in ("pairs_per_s", "tokens_per_s")}
            ratios[key]["against"] = other
    record = {
        "benchmark": NAME,
        "settings": {"model": config.model, "model_label": bench.model_label, "data": config.data,
                     "total_params": counts["total_params"], "trainable_params": counts["trainable_params"],
                     "regime": args.regime, "steps": args.steps, "original_steps": args.original_steps,
                     "batch_size": args.batch_size, "sample_pairs": len(sample), "pool_pairs": len(sample),
                     "repeats": args.repeats, "lr": args.lr, "seed": args.seed, "ways": ways,
                     "original_prefix": prefix, "project_prefix": config.prefix, "project_precision": project_precision,
                     "corpus_pairs": bench.counts.get("kept"), "train_pairs": len(bench.tokenized["train"]),
                     "original_source_len": source_len, "original_target_len": target_len,
                     "sample_mean_source_tokens": common.mean_length(sources),
                     "sample_mean_target_tokens": common.mean_length(sample["labels"]),
                     "flop_weights": flop_weights},
        "run": common.run_info(args, device),
        "matmul_peak_flops_per_s": peaks, "matmul_size": args.matmul_size,
        "ways": summary,
        "skipped": {w: {"label": WAYS[w], "reason": r} for w, r in skipped.items()},
        "ratios": ratios,
        # the ratios as the issue names them
        "c_over_a": ratios.get("project_vs_original", {}).get("tokens_per_s"),
        "c_over_b": ratios.get("project_vs_trainer", {}).get("tokens_per_s"),
        "share_of_peak": {w: summary[w]["share_of_peak"] for w in summary},
        "targets": {k: {"target": t, "unit": "tokens_per_s", "met": common.target_met(ratios[k]["tokens_per_s"], t)}
                    for k, t in TARGETS.items() if k in ratios},
    }
    if args.profile:
        model = copy.deepcopy(base_model).to(device)
        record["profile"] = profile_project(model, sample, tokenizer, config, device, args.profile_steps,
                                            args.profile_rows)
        del model
    return common.finish(args, NAME, record, print_report)


def print_report(record: dict) -> None:
    s = record["settings"]
    print(f"\ntraining throughput: {s['model_label']} ({s['total_params'] / 1e6:.1f} M parameters, random init, "
          f"{s['regime']} trains {s['trainable_params'] / 1e6:.1f} M), data {s['data']}, pool of {s['pool_pairs']} "
          f"pairs, {s['steps']} steps x {s['batch_size']} pairs ((a): {s['original_steps']}), median of "
          f"{s['repeats']}, {record['run']['threads']} threads on {record['run']['device']}")
    print(f"(a) pads every row to the corpus maximum: {s['original_source_len']} source / "
          f"{s['original_target_len']} target tokens (sample mean {s['sample_mean_source_tokens']:.1f} / "
          f"{s['sample_mean_target_tokens']:.1f})")
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s"
                                      for k, v in record["matmul_peak_flops_per_s"].items()) + "\n")
    rows = []
    for name, label in WAYS.items():
        if name in record["ways"]:
            way = record["ways"][name]
            share = way["share_of_peak"]
            rows.append([label, way["precision"], way["pairs_per_s"], way["tokens_per_s"], way["positions_per_step"],
                         f"{100 * way['padding']:.0f}%", way["useful_flops_per_s"] / 1e9,
                         "-" if share is None else f"{100 * share:.1f}%"])
        elif name in record["skipped"]:
            rows.append([label, None, None, None, None, "skipped", None, None])
    print(common.format_table(["way", "precision", "pairs/s", "real target tokens/s", "positions/step", "padding",
                               "useful GFLOP/s", "of peak"], rows))
    for way in record["skipped"].values():
        print(f"{way['label']} skipped: {way['reason']}")
    for key, label in (("project_vs_original", "c/a"), ("project_vs_trainer", "c/b")):
        if key in record["ratios"]:
            r, t = record["ratios"][key], record["targets"][key]
            print(f"{label} (against {r['against']}): {common.fmt_ratio(r['pairs_per_s'])} pairs/s, "
                  f"{common.fmt_ratio(r['tokens_per_s'])} tokens/s (target >= {t['target']}x: "
                  f"{'met' if t['met'] else 'not met'})")
    if "profile" in record:
        p = record["profile"]
        print(f"\nprofile of (c), {p['steps']} steps: ms per step by phase: "
              + ", ".join(f"{k} {v:.1f}" for k, v in p["phase_ms_per_step"].items()))
        print(p["table"])


if __name__ == "__main__":
    sys.exit(main())
