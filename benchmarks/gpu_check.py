"""The GPU check: a t5-small `scratch` epoch's training steps on one GPU, eager against `torch.compile` at batch
32 and 128, and 1 against 2 and 4 processes sharing the GPU (trials per hour), in one run of under 10 minutes.

    python benchmarks/gpu_check.py --data .gpu/fra.txt --model .gpu/t5-small --out $OUT/gpu_check.json
    python benchmarks/gpu_check.py --smoke --data pairs.tsv --model TOKENIZER_DIR --out /tmp/gpu_check.json

The lent GPU machine has torch and transformers but neither Ray, Optuna nor datasets, so this script imports
`study.config`, `study.model` and `study.training.step` alone — the optimizer, the step, the device-side loss
tally and the compiled forward that every trial runs — and does the data's part itself: it reads the pairs
file (English TAB French per line, as fra.txt), keeps a seeded 80 % as the training split (the study's
`--split` default; the study splits by English sentence, here rows: the same size), tokenizes with the model
directory's tokenizer as the study does (task prefix + English, French; pairs over 96 tokens dropped) and
batches as `study.data.batching` does: length-grouped pools of 50 batches, the batches shuffled, each padded to
its longest row (to a multiple of `COMPILE_PAD` tokens when compiled, so that a few static shapes are compiled).

Each measurement runs in fresh processes (the 2 and 4 that share the GPU start together after their warm-up):
warm-up steps (compiled: one step of each padded shape the timed steps use, so the compile is timed apart),
then `--steps` timed steps from the start of a shuffled epoch (a random sample of its batches; the last,
partial batch left out). The epoch's training time is estimated as seconds per step x steps per epoch; the
validation generation is not timed here. Trials per hour: k processes x 3600 / each one's epoch seconds.
Targets (issue 46): an epoch <= 20 s at batch 128 on one H200; >= 3x the trials per hour with 4 sharing it.
`--smoke` runs the whole script on the CPU in seconds: a tiny T5, a few steps, `torch.compile`'s `eager`
backend (tracing only), 1 and 2 processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# Before transformers is imported: never reach for the hub, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if __package__ in (None, ""):  # run as a script: make `study` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from study.config import DEFAULT_PREFIX, Config, StudyError  # noqa: E402
from study.training.step import (  # noqa: E402
    COMPILE_PAD,
    READ_EVERY,
    StepTally,
    compile_forward,
    make_optimizer,
    training_step,
)

ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 96  # the study's max_source_tokens / max_target_tokens defaults
POOL = 50  # batches per length-sorted pool, as transformers' LengthGroupedSampler (study.data.batching)
TARGETS = {"epoch_s_at_batch_128": 20.0, "trials_per_hour_gain_at_4": 3.0}
SMOKE = {"batch_sizes": [4, 8], "processes": [1, 2], "steps": 3, "max_train_pairs": 64, "device": "cpu",
         "compile_backend": "eager", "share_batch": 4}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="the pairs file: English TAB French per line (e.g. fra.txt)")
    p.add_argument("--model",
                   help="a model directory with config.json and a tokenizer, no weights needed (e.g. t5-small); "
                        "with --smoke a tokenizer directory is enough")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 32], help="eager and compiled at each (default 128 32)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="processes sharing the GPU (default 1 2 4)")
    p.add_argument("--share-batch", type=int, default=32,
                   help="batch size of the sharing runs (default 32: where one trial leaves the GPU idlest)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement (default 200)")
    p.add_argument("--max-train-pairs", type=int, help="cap on training pairs (default: the whole 80 %% split)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="as a trial's (default auto: bf16 on a GPU)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile's backend (default inductor)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="wall-clock budget; measurements that would start after it are skipped (default 540)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a tiny model, a few steps on the CPU: checks the script end to end")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/gpu_check.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # a measurement's spec (JSON): run by this script itself
    return p


# -------------------------------------------------------------------------------------------------- data


def load_tokenizer(directory: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001
        raise StudyError(f"--model {directory}: no tokenizer loads from there ({type(err).__name__}); pass a "
                         "model directory such as t5-small's") from err


def tokenized_train(path: Path, tokenizer, seed: int, max_pairs: int | None) -> dict:
    """The training split's token ids: a seeded 80 % of the file's pairs, prefix + English -> French + eos."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
            rows.append((cols[0].strip(), cols[1].strip()))
    if len(rows) < 10:
        raise StudyError(f"--data {path}: {len(rows)} pairs read; pass a file of English TAB French lines")
    random.Random(seed).shuffle(rows)
    rows = rows[:int(0.8 * len(rows))][:max_pairs]
    sources = tokenizer([DEFAULT_PREFIX + en for en, _ in rows])["input_ids"]
    targets = tokenizer(text_target=[fr for _, fr in rows])["input_ids"]
    kept = [(s, t) for s, t in zip(sources, targets) if len(s) <= MAX_TOKENS and len(t) <= MAX_TOKENS]
    return {"sources": [s for s, _ in kept], "targets": [t for _, t in kept], "pad_id": tokenizer.pad_token_id,
            "read_pairs": len(rows)}


def epoch_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """One epoch's batches of row indices as `study.data.batching` orders them: a seeded permutation, sorted by
    length (longest first) inside pools of 50 batches, then the batches shuffled."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    pooled = []
    for start in range(0, len(order), POOL * batch_size):
        pooled += sorted(order[start:start + POOL * batch_size], key=lambda i: -lengths[i])
    batches = [pooled[i:i + batch_size] for i in range(0, len(pooled), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def collate(rows: list[int], data: dict, pad_to: int | None) -> dict:
    """Sources and targets padded to the batch's longest (rounded up to a multiple of `pad_to`); labels with -100."""
    def pad(seqs, value):
        length = max(map(len, seqs))
        if pad_to:
            length = -(-length // pad_to) * pad_to
        out = torch.full((len(seqs), length), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = torch.tensor(s)
        return out

    input_ids = pad([data["sources"][i] for i in rows], data["pad_id"])
    return {"input_ids": input_ids, "attention_mask": (input_ids != data["pad_id"]).long(),
            "labels": pad([data["targets"][i] for i in rows], -100)}


# ---------------------------------------------------------------------------------------------- a worker


def build_model(spec: dict, tokenizer):
    from study.model.weights import random_model, tiny_config

    if spec["smoke"]:
        from transformers import T5ForConditionalGeneration

        config = Config(model="tiny", tiny_d_model=32, tiny_layers=1, tiny_heads=2, tiny_d_ff=64)
        return T5ForConditionalGeneration(tiny_config(config, tokenizer))
    return random_model(Config(model=spec["model"]), tokenizer)


def measure(spec: dict) -> dict:
    """One process's measurement: warm-up, then `steps` timed steps of the project's training step."""
    from study.model.device import pick_device, resolve_precision

    torch.set_num_threads(spec["threads"])
    device = pick_device(spec["device"])
    data = torch.load(spec["data_file"])
    tokenizer = load_tokenizer(spec["model"])
    torch.manual_seed(spec["seed"])
    model = build_model(spec, tokenizer).to(device)
    model.train()
    batch_size, compiled = spec["batch_size"], spec["compile"]
    lengths = [len(s) + len(t) for s, t in zip(data["sources"], data["targets"])]
    batches = [b for b in epoch_batches(lengths, batch_size, spec["seed"]) if len(b) == batch_size]
    steps_per_epoch = -(-len(lengths) // batch_size)
    precision = resolve_precision(spec["precision"], device, model.config.d_model, batch_size)
    config = Config(regime="scratch", batch_size=batch_size, precision=precision)  # a trial's lr, clipping, ...
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch)
    forward = compile_forward(model, backend=spec["compile_backend"]) if compiled else None
    pad_to = COMPILE_PAD if compiled else None
    timed = [collate(b, data, pad_to) for b in batches[:spec["steps"]]]
    if compiled:  # one step per padded shape: each compiles once, before the clock starts
        shapes = {(b["input_ids"].shape, b["labels"].shape): b for b in timed}
        warmup = list(shapes.values())
    else:
        warmup = timed[:3]
    sync(device)
    start = time.perf_counter()
    tally = StepTally()
    for batch in warmup:
        tally.add(*training_step(model, batch, optimizer, scheduler, config, device, forward))
    tally.read()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    barrier(spec)
    sync(device)
    start = time.perf_counter()
    losses = []
    for batch in timed:
        tally.add(*training_step(model, batch, optimizer, scheduler, config, device, forward))
        if len(tally) == READ_EVERY:
            losses += tally.read()
    losses += tally.read()
    sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(n for _, n in losses)
    return {"batch_size": batch_size, "compile": compiled, "precision": precision, "steps": len(timed),
            "seconds": seconds, "ms_per_step": 1e3 * seconds / len(timed), "target_tokens_per_s": tokens / seconds,
            "steps_per_epoch": steps_per_epoch, "epoch_s": seconds / len(timed) * steps_per_epoch,
            "warmup_steps": len(warmup), "warmup_s": warmup_s, "shapes": len({(b["input_ids"].shape, b["labels"].shape)
                                                                              for b in timed}),
            "mean_loss": sum(loss * n for loss, n in losses) / max(tokens, 1),
            "peak_gpu_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def barrier(spec: dict, timeout_s: float = 300.0) -> None:
    """Processes that share the device start their timed steps together: each says it is ready, then waits
    for the parent's `go`."""
    if not spec.get("barrier"):
        return
    folder = Path(spec["barrier"])
    (folder / f"ready.{spec['index']}").touch()
    deadline = time.monotonic() + timeout_s
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise StudyError("the other processes never became ready")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------- the parent


def run_processes(specs: list[dict], timeout_s: float) -> list[dict]:
    """One worker process per spec, all at once (their timed steps start together); their results, or a
    StudyError with the first failure's last line. Output goes to files: a full pipe would stall a worker."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        procs, logs = [], [Path(folder) / f"out.{i}" for i in range(len(specs))]
        for i, spec in enumerate(specs):
            spec = {**spec, "index": i, "barrier": folder if len(specs) > 1 else None}
            with logs[i].open("w") as log:
                procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                                               json.dumps(spec)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        deadline = time.monotonic() + timeout_s
        while len(specs) > 1 and len(list(Path(folder).glob("ready.*"))) < len(specs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        (Path(folder) / "go").touch()
        errors = []
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                errors.append(f"timed out after {timeout_s:.0f} s")
        lines = [log.read_text(errors="replace").strip().splitlines() or [""] for log in logs]
        errors += [f"a worker failed: {text[-1]}" for p, text in zip(procs, lines) if p.returncode != 0]
        if errors:
            raise StudyError(errors[0])
        return [json.loads(text[-1]) for text in lines]


def plan(args: argparse.Namespace) -> list[dict]:
    """The measurements, most telling first: eager at each batch size, sharing, then compiled (whose compile
    may take minutes, so a budget that runs out loses the least)."""
    ways = [{"name": f"eager_b{b}", "batch_size": b, "compile": False, "processes": 1} for b in args.batch_sizes]
    ways += [{"name": f"shared_{k}_b{args.share_batch}", "batch_size": args.share_batch, "compile": False,
              "processes": k} for k in args.processes if k > 1]
    ways += [{"name": f"compiled_b{b}", "batch_size": b, "compile": True, "processes": 1} for b in args.batch_sizes]
    return ways


def summarize(record: dict) -> None:
    """The comparisons the issue asks for, from whatever measurements finished."""
    ways, settings = record["ways"], record["settings"]
    record["compile_speedup"] = {str(b): ways[f"eager_b{b}"]["epoch_s"] / ways[f"compiled_b{b}"]["epoch_s"]
                                 for b in settings["batch_sizes"]
                                 if "epoch_s" in ways.get(f"eager_b{b}", {}) and "epoch_s" in ways.get(f"compiled_b{b}", {})}
    sharing = {}
    for k in settings["processes"]:
        way = ways.get(f"eager_b{settings['share_batch']}" if k == 1 else f"shared_{k}_b{settings['share_batch']}", {})
        epochs = [r["epoch_s"] for r in way.get("processes_results", [way] if "epoch_s" in way else [])]
        if epochs:
            sharing[str(k)] = {"epoch_s_each": epochs, "trials_per_hour": sum(3600 / s for s in epochs)}
    base = sharing.get("1", {}).get("trials_per_hour")
    for entry in sharing.values():
        entry["gain"] = entry["trials_per_hour"] / base if base else None
    record["sharing"] = sharing
    measured = {"epoch_s_at_batch_128": min((ways[w]["epoch_s"] for w in ("eager_b128", "compiled_b128")
                                             if "epoch_s" in ways.get(w, {})), default=None),
                "trials_per_hour_gain_at_4": sharing.get("4", {}).get("gain")}
    record["targets"] = {name: {"target": t, "measured": measured[name],
                                "met": None if measured[name] is None else
                                (measured[name] <= t if name.startswith("epoch") else measured[name] >= t)}
                         for name, t in TARGETS.items()}


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if not args.data or not args.model:
        raise StudyError("pass --data (the pairs file) and --model (a model directory)")
    data_path, model_dir = Path(args.data).resolve(), Path(args.model).resolve()  # workers run elsewhere
    if not data_path.is_file():
        raise StudyError(f"--data {data_path}: no such file; pass the pairs file (e.g. fra.txt)")
    if not args.smoke and not (model_dir / "config.json").is_file():
        raise StudyError(f"--model {model_dir}: no config.json there; pass a model directory such as t5-small's")
    if min(args.batch_sizes + args.processes + [args.steps, args.share_batch]) < 1:
        raise StudyError("--batch-sizes, --processes, --steps and --share-batch must be at least 1")
    from study.model.device import pick_device

    device = pick_device(args.device)
    tokenizer = load_tokenizer(str(model_dir))
    data = tokenized_train(data_path, tokenizer, args.seed, args.max_train_pairs)
    out = args.out or ROOT / "benchmarks" / "out" / "gpu_check.json"
    import transformers

    record = {"benchmark": "gpu_check", "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "cpu_count": os.cpu_count(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__},
              "argv": sys.argv[1:],
              "settings": {"data": str(data_path), "model": str(model_dir), "smoke": args.smoke,
                           "train_pairs": len(data["sources"]), "read_pairs": data["read_pairs"],
                           "batch_sizes": args.batch_sizes, "processes": args.processes,
                           "share_batch": args.share_batch, "steps": args.steps, "compile_pad": COMPILE_PAD,
                           "compile_backend": args.compile_backend, "read_every": READ_EVERY, "seed": args.seed},
              "ways": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-data-") as folder:
        data_file = Path(folder) / "train.pt"
        torch.save(data, data_file)
        for way in plan(args):
            left = args.budget_s - (time.monotonic() - started)
            if left < 20:
                record["ways"][way["name"]] = {**way, "skipped": f"the {args.budget_s:.0f} s budget ran out"}
                continue
            k = way["processes"]
            spec = {"data_file": str(data_file), "model": str(model_dir), "smoke": args.smoke,
                    "device": str(device), "precision": args.precision, "compile_backend": args.compile_backend,
                    "steps": args.steps, "batch_size": way["batch_size"], "compile": way["compile"],
                    "threads": max(1, (os.cpu_count() or 1) // k)}
            print(f"{way['name']} ...", flush=True)
            try:
                results = run_processes([{**spec, "seed": args.seed + i} for i in range(k)], timeout_s=left)
            except StudyError as err:
                record["ways"][way["name"]] = {**way, "error": str(err)}
                print(f"  {way['name']}: {err}", flush=True)
            else:
                entry = {**way, **results[0]} if k == 1 else {**way, "processes_results": results}
                record["ways"][way["name"]] = entry
                print("  " + ", ".join(f"{r['ms_per_step']:.1f} ms/step, epoch ~{r['epoch_s']:.1f} s" for r in results),
                      flush=True)
            summarize(record)
            write_json(out, record)  # after every measurement: a run cut short keeps what it measured
    print_report(record)
    print(f"\nwrote {out}")
    failed = [w.get("error") for w in record["ways"].values() if "error" in w]
    if failed and not any("steps" in w or "processes_results" in w for w in record["ways"].values()):
        raise StudyError(f"every measurement failed; the first: {failed[0]}")
    return 0


def print_report(r: dict) -> None:
    s = r["settings"]
    print(f"\n{Path(s['model']).name} scratch on {r['gpu'] or r['device']}: {s['train_pairs']:,} training pairs, "
          f"{s['steps']} timed steps a measurement")
    for name, way in r["ways"].items():
        if "skipped" in way or "error" in way:
            print(f"  {name:<16} {way.get('skipped') or way['error']}")
        for res in way.get("processes_results", [way] if "epoch_s" in way else []):
            print(f"  {name:<16} {res['ms_per_step']:8.1f} ms/step {res['target_tokens_per_s']:10,.0f} target tok/s "
                  f"epoch ~{res['epoch_s']:7.1f} s  warm-up {res['warmup_s']:.1f} s ({res['shapes']} shapes)")
    for b, x in r["compile_speedup"].items():
        print(f"  compiled over eager at batch {b}: {x:.2f}x")
    for k, entry in r["sharing"].items():
        gain = entry["gain"]
        print(f"  {k} process(es): {entry['trials_per_hour']:.1f} epoch-trials/hour"
              + (f" ({gain:.2f}x one alone)" if gain else ""))
    for name, t in r["targets"].items():
        print(f"  target {name} {t['target']}: {t['measured']} -> "
              + {True: "met", False: "not met", None: "not measured"}[t["met"]])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:  # a measurement process: its result is the last line of its output
        print(json.dumps(measure(json.loads(args.worker))), flush=True)
        return 0
    try:
        return run(args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
