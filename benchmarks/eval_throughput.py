"""Evaluation throughput: the original notebook's generation vs this project's `study.metrics.generation.translate`.

    python benchmarks/eval_throughput.py --data ../shared/data/eng-fra.tsv --pairs 256 --repeats 3
    python benchmarks/eval_throughput.py --model tiny --train-steps 300 --pairs 500   # also a trained model

Both translate the same `--pairs` sources of the test split (the project's token ids: prefix + English + eos)
with the same model, at every `--beams` value, and decode the output to text:

original - the notebook: every source padded to the longest source of the whole corpus (all splits, at
           most 512 tokens), fixed-size batches in the evaluation set's order (by default a seeded shuffle,
           as the notebook's random train/test split left it; `--order file` keeps the file's order),
           `generate(max_length=` the padded label length, i.e. the longest target of the corpus `)`.
project  - `study.metrics.generation.translate`: batches sorted by source length, each padded to its own longest
           source, and a new-token limit derived from the batch's sources (`generation_limit`), with
           `early_stopping` for beam search.

The model is a random init of `--config`'s architecture: an untrained model rarely emits end-of-sequence,
so it babbles to whatever limit it is given - the original's scratch regime, where evaluation dominated the
epoch time. `--train-steps N` adds a model trained N steps with the project's loop, which stops earlier.
The table says which model each row is and how many of the original's outputs never emitted EOS. Figures:
sentences/s, the median over `--repeats` (the two ways interleaved), after one untimed warm-up generation.
Not timed: `study.metrics.generation.score_split` also translates each distinct source only once (shown as "distinct").
JSON goes to benchmarks/out/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as `python benchmarks/eval_throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, loops  # noqa: E402
from study.config import StudyError  # noqa: E402
from study.metrics.generation import generation_limit, prefix_length, translate  # noqa: E402
from study.model.device import PRECISIONS, resolve_precision  # noqa: E402
from study.model.regimes import build_model  # noqa: E402

NAME = "eval_throughput"
TARGET = 4.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/eval_throughput.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    common.add_common_args(p)
    p.add_argument("--pairs", type=int, default=256, help="sources translated per way and repeat (default 256)")
    p.add_argument("--batch-size", type=int, default=64, help="generation batch size, both ways (default 64)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="num_beams values (default 1 4)")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported (default 3)")
    p.add_argument("--split", default="test", choices=("test", "validation"), help="pairs to translate")
    p.add_argument("--order", default="shuffled", choices=("shuffled", "file"),
                   help="the original's batch order: a seeded shuffle (default, like its random split) or file order")
    p.add_argument("--train-steps", type=int, default=0,
                   help="also benchmark a model trained this many steps with the project's loop (default 0: only the random init)")
    p.add_argument("--train-batch-size", type=int, default=32, help="batch size of that training")
    p.add_argument("--train-lr", type=float, default=1e-3, help="learning rate of that training")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the project's precision, resolved as a trial resolves it (default auto: bf16 for "
                        "t5-small on a bf16 CPU); the original always ran fp32")
    return p


def sample_rows(ds, n: int, seed: int, order: str):
    """`n` seeded random rows; shuffled, or in file order."""
    n = min(n, len(ds))
    idx = np.random.default_rng([seed, 2]).choice(len(ds), size=n, replace=False)
    return ds.select(np.sort(idx) if order == "file" else idx)


@torch.no_grad()
def original_translate(model, padded: dict[str, torch.Tensor], tokenizer, *, batch_size: int, num_beams: int,
                       device: torch.device) -> tuple[list[str], dict]:
    """The notebook's evaluation: pre-padded fixed-size batches in order, `max_length` = the padded label length."""
    model.eval()
    max_length = padded["labels"].shape[1]
    texts: list[str] = []
    no_eos = decode_steps = batches = 0
    for start in range(0, len(padded["input_ids"]), batch_size):
        ids = padded["input_ids"][start:start + batch_size].to(device)
        mask = padded["attention_mask"][start:start + batch_size].to(device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_length=max_length, num_beams=num_beams,
                             do_sample=False)
        texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True,
                                                            clean_up_tokenization_spaces=False)]
        body = out[:, 1:]  # after the decoder start token
        no_eos += int((~(body == tokenizer.eos_token_id).any(dim=1)).sum())
        decode_steps += body.shape[1]
        batches += 1
    return texts, {"no_eos": no_eos, "decode_steps_per_batch": decode_steps / max(batches, 1),
                   "limit_per_batch": max_length - 1}


def project_limits(sources: list[list[int]], batch_size: int, max_target_tokens: int, prefix_tokens: int) -> float:
    """The mean new-token limit `translate` gives its batches (same length-sorted batching)."""
    lengths = sorted((len(s) for s in sources), reverse=True)
    limits = [generation_limit(lengths[i] - prefix_tokens, max_target_tokens)
              for i in range(0, len(lengths), batch_size)]
    return sum(limits) / max(len(limits), 1)


def train_briefly(model, train, tokenizer, config, device: torch.device, steps: int) -> float:
    """`steps` steps of the project's loop (several passes if needed); returns the mean training loss."""
    loop = loops.ProjectLoop(model, train, tokenizer, config, device, total_steps=steps)
    done, epoch = 0, 1
    while done < steps:
        for batch in loop.batches(epoch=epoch):
            loop.step(batch)
            done += 1
            if done == steps:
                break
        epoch += 1
    model.eval()
    return loop.loss_sum / max(loop.tokens, 1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


def run(args: argparse.Namespace) -> int:
    for name in ("pairs", "batch_size", "repeats", "train_batch_size"):
        common.positive(name.replace("_", "-"), getattr(args, name))
    if any(b < 1 for b in args.beams) or args.train_steps < 0:
        raise StudyError("--beams must be at least 1 and --train-steps non-negative")
    device = common.setup_torch(args)
    bench = common.load_data(args, regime="scratch", batch_size=args.train_batch_size, lr=args.train_lr,
                             precision=args.precision)
    tokenizer, config = bench.tokenizer, bench.config
    rows = sample_rows(bench.tokenized[args.split], args.pairs, args.seed, args.order)
    sources = [list(s) for s in rows["input_ids"]]
    padded = loops.original_tensors(sources, [list(t) for t in rows["labels"]], bench.corpus_source_max,
                                     bench.corpus_target_max, tokenizer.pad_token_id)
    distinct = len({tuple(s) for s in sources})

    base_model, counts = build_model(config, tokenizer)
    base_model.to(device)
    precision = resolve_precision(config.precision, device, base_model.config.d_model,
                                  config.batch_size)  # as `fit` resolves it
    models = [("random init", base_model, None)]
    if args.train_steps:
        trained = copy.deepcopy(base_model)
        loss = train_briefly(trained, bench.tokenized["train"], tokenizer, config, device, args.train_steps)
        print(f"trained {args.train_steps} steps: mean training loss {loss:.3f}", flush=True)
        models.append((f"trained {args.train_steps} steps", trained, loss))

    prefix_tokens = prefix_length(tokenizer, config.prefix)
    results = []
    for label, model, loss in models:
        model.eval()
        for beams in args.beams:
            with torch.no_grad():  # warm-up, untimed
                model.generate(input_ids=padded["input_ids"][:2].to(device),
                               attention_mask=padded["attention_mask"][:2].to(device), max_new_tokens=2,
                               num_beams=beams, do_sample=False)
            original_s, project_s = [], []
            for _ in range(args.repeats):
                seconds, (_, info) = timed(partial(original_translate, model, padded, tokenizer,
                                                   batch_size=args.batch_size, num_beams=beams, device=device))
                original_s.append(seconds)
                seconds, _ = timed(partial(translate, model, sources, tokenizer, num_beams=beams,
                                           batch_size=args.batch_size, max_target_tokens=config.max_target_tokens,
                                           device=device, prefix_tokens=prefix_tokens, precision=precision))
                project_s.append(seconds)
            original = {"sentences_per_s": len(sources) / common.median(original_s), "seconds": original_s,
                        "new_token_limit_per_batch": info["limit_per_batch"],
                        "decode_steps_per_batch": info["decode_steps_per_batch"]}
            project = {"sentences_per_s": len(sources) / common.median(project_s), "seconds": project_s,
                       "new_token_limit_per_batch": project_limits(sources, args.batch_size, config.max_target_tokens,
                                                                             prefix_tokens)}
            speedup = common.ratio(project["sentences_per_s"], original["sentences_per_s"])
            results.append({"model": label, "train_steps": 0 if loss is None else args.train_steps,
                            "train_loss": loss, "num_beams": beams, "original": original, "project": project,
                            "ratio": speedup, "no_eos_fraction_original": info["no_eos"] / len(sources),
                            "target": TARGET, "met": common.target_met(speedup, TARGET)})
            print(f"{label}, beams {beams}: original {original['sentences_per_s']:.2f} sent/s, project "
                  f"{project['sentences_per_s']:.2f} sent/s ({common.fmt_ratio(speedup)})", flush=True)

    record = {
        "benchmark": NAME,
        "settings": {"model": config.model, "model_label": bench.model_label, "data": config.data,
                     "total_params": counts["total_params"], "split": args.split, "pairs": len(sources),
                     "distinct_sources": distinct, "batch_size": args.batch_size, "beams": args.beams,
                     "repeats": args.repeats, "order": args.order, "seed": args.seed,
                     "original_source_len": bench.corpus_source_max, "original_max_length": bench.corpus_target_max,
                     "project_max_target_tokens": config.max_target_tokens, "project_precision": precision,
                     "mean_source_tokens": common.mean_length(sources)},
        "run": common.run_info(args, device),
        "results": results,
    }
    return common.finish(args, NAME, record, print_report)


def print_report(record: dict) -> None:
    s = record["settings"]
    print(f"\nevaluation throughput: {s['model_label']} ({s['total_params'] / 1e6:.1f} M parameters), data "
          f"{s['data']}, {s['pairs']} {s['split']} sources ({s['distinct_sources']} distinct), batch {s['batch_size']}, "
          f"median of {s['repeats']}, {record['run']['threads']} threads on {record['run']['device']}")
    print(f"original: sources padded to {s['original_source_len']} tokens, max_length {s['original_max_length']}; "
          f"project: sources padded per batch (mean {s['mean_source_tokens']:.1f} tokens), limit "
          f"min({s['project_max_target_tokens']}, 1.5 x source + 10), {s['project_precision']}\n")
    rows = [[r["model"], r["num_beams"], r["original"]["sentences_per_s"], r["project"]["sentences_per_s"],
             common.fmt_ratio(r["ratio"]), f"{r['original']['new_token_limit_per_batch']:.0f} / "
             f"{r['project']['new_token_limit_per_batch']:.0f}", f"{100 * r['no_eos_fraction_original']:.0f}%",
             "met" if r["met"] else "not met"] for r in record["results"]]
    print(common.format_table(["model", "beams", "original sent/s", "project sent/s", "ratio",
                               "new-token limit orig / proj", "no EOS (orig)", f"target >= {TARGET:g}x"], rows))


if __name__ == "__main__":
    sys.exit(main())
