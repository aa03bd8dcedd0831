"""The search's ground truth: every configuration of a grid trained once per seed, every epoch recorded.

    python benchmarks/search_table.py                       # scratch, decoder, full: 7 lr x 3 batch x 2 seeds, ~1 h on 2 cores
    python benchmarks/search_table.py --regimes full --lrs 3 --seeds 1 --out /tmp/t.json   # a small table
    python benchmarks/search_table.py --only decoder:0.00215:16 --seeds 6  # one configuration's seeds 2..5 added
    python benchmarks/search_table.py --data ../shared/data/eng-fra.tsv --batches 16 \
        --out docs/measurements/search_table_tatoeba.json                  # the same grid on real text

A tabular benchmark in the sense of Zhang & Duh (TACL 2020) and HPOBench: each point of the grid (regime x
learning rate x batch size x seed) is trained once, on the quick preset's data and model, through the same
`study.training.loop.fit` a trial runs, with the regime's search-space fixed values. After every epoch the
epoch's checkpoint is scored on

- the study's own validation subset (`max_eval_pairs` of the preset, the rows a trial sees) and on a larger
  seeded subset of the validation split that contains it, each greedy and with 4 beams, from the same model
  (beams do not change training, so one trained run gives both `num_beams` choices);
- its validation loss on both, and the wall time of training and of each scoring pass (the replay's clock);

and for each beam choice, at the final epoch and at that beam's best validation epoch (by the study's subset,
as the study selects), on the preset's test subset. A benchmark may look at test; the study never selects on
it. `upstream` (nothing trained) is scored once, both beam choices. Points already in `--out` are kept, so an
interrupted table is continued by running the same command again.

Read by `benchmarks/search_replay.py` (the oracle, the rung signals and the replayed searches).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/search_table.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import PRESETS, Config, StudyError  # noqa: E402

NAME = "search_table"
DEFAULT_OUT = common.ROOT / "docs" / "measurements" / "search_table_quick.json"
TRAINED = ("scratch", "decoder", "full")
BEAMS = (1, 4)
LARGER_VALIDATION = 400  # the larger validation subset: twice the study's 200, which it contains

_DATA: dict[str, Any] = {}  # per worker process: the prepared data, loaded once


def lr_grid(spaces: dict, points: int) -> list[float]:
    """`points` learning rates, evenly spaced in log, from the lowest to the highest bound of any space."""
    low = min(s.search["lr"]["low"] for s in spaces.values())
    high = max(s.search["lr"]["high"] for s in spaces.values())
    if points == 1:
        return [low]
    step = (math.log10(high) - math.log10(low)) / (points - 1)
    return [float(f"{10 ** (math.log10(low) + k * step):.3g}") for k in range(points)]


def preset_config(cache_dir: str | None, data: str | None = None, max_train_pairs: int | None = None) -> Config:
    config = Config(**PRESETS["quick"]["config"])
    if data:
        config = config.replace(data=data)
    if max_train_pairs:
        config = config.replace(max_train_pairs=max_train_pairs)
    if cache_dir:
        config = config.replace(cache_dir=str(Path(cache_dir).expanduser().resolve()))
    return config


def point_key(p: dict) -> str:
    return f"{p['regime']}|{p['lr']}|{p['batch_size']}|{p['seed']}"


def _load(config: Config) -> dict:
    """The study's data with the whole validation split, the study's subset and the larger one (indices)."""
    if "data" not in _DATA:
        from study.data.pairs import subset_indices
        from study.training.pretraining import prepare_data_with_upstream

        data = prepare_data_with_upstream(config.replace(max_eval_pairs=None), need_upstream=True)
        n = len(data.validation)
        study_rows = subset_indices(n, config.max_eval_pairs, config.data_seed)
        rest = sorted(set(range(n)) - set(study_rows))
        extra = subset_indices(len(rest), LARGER_VALIDATION - len(study_rows), config.data_seed + 1)
        larger_rows = sorted(set(study_rows) | {rest[i] for i in extra})
        position = {row: i for i, row in enumerate(larger_rows)}
        _DATA.update(data=data, larger=data.validation.select(larger_rows),
                     in_study=[position[r] for r in study_rows],
                     for_trials=dataclasses.replace(data, validation=data.validation.select(study_rows), test=None))
    return _DATA


def _score(model, dataset, config: Config, device, in_study: list[int] | None = None) -> dict:
    """Greedy and 4-beam BLEU and loss of `model` on `dataset` (and on its rows `in_study`), with the time."""
    from study.metrics.generation import score_split
    from study.metrics.scoring import translation_scores

    out: dict[str, float] = {}
    for beams in BEAMS:
        start = time.perf_counter()
        metrics, hyps, refs = score_split(model, dataset, _DATA["data"].tokenizer, config.replace(num_beams=beams),
                                       device)
        out[f"seconds_b{beams}"] = time.perf_counter() - start
        out[f"bleu_b{beams}"] = metrics["val_bleu"]
        out["loss"] = metrics["val_loss"]
        if in_study is not None:
            out[f"study_bleu_b{beams}"] = translation_scores([hyps[i] for i in in_study],
                                                             [refs[i] for i in in_study])["bleu"]
    return out


def run_point(point: dict, base: dict) -> dict:
    """Train one grid point and score each epoch; returns its record."""
    import torch

    from study.metrics.generation import score_split, token_nll
    from study.model.regimes import REGIMES
    from study.training.checkpoints import load_trained_model
    from study.training.loop import fit

    torch.set_num_threads(1)
    config = Config.from_dict(base).replace(**{k: v for k, v in point.items() if k != "fixed" and v is not None},
                                            **point["fixed"])
    d = _load(config)
    data, device = d["data"], torch.device("cpu")
    test = data.test
    started = time.perf_counter()
    if not REGIMES[config.regime].trains:
        model = load_trained_model(config, data.tokenizer, None, data.upstream).eval()
        scores = _score(model, d["larger"], config, device, d["in_study"])
        test_scores = _score(model, test, config, device)
        return {**point, "epochs": [], "upstream": {"validation": scores, "test": test_scores},
                "seconds": time.perf_counter() - started}

    with tempfile.TemporaryDirectory() as keep:
        epochs: list[dict] = []

        def report(metrics: dict, save) -> None:
            row = {k: metrics[k] for k in ("epoch", "train_loss", "val_loss", "val_bleu", "epoch_time_s",
                                           "train_tokens_per_s", "diverged")}
            if save is not None:
                save(Path(keep) / f"epoch_{metrics['epoch']}")
            epochs.append(row)

        fit(config.replace(num_beams=1), d["for_trials"], report)
        for row in epochs:
            if row["diverged"]:
                continue
            model = load_trained_model(config, data.tokenizer, Path(keep) / f"epoch_{row['epoch']}",
                                       data.upstream).eval()
            s = _score(model, d["larger"], config, device, d["in_study"])
            nll, tokens = token_nll(model, d["for_trials"].validation, data.tokenizer, config.eval_batch_size,
                                    device, config.precision)
            row.update({"val_bleu_greedy": s["study_bleu_b1"], "val_bleu_beam4": s["study_bleu_b4"],
                        "val_loss_study": nll / max(tokens, 1),
                        "larger_bleu_greedy": s["bleu_b1"], "larger_bleu_beam4": s["bleu_b4"],
                        "larger_val_loss": s["loss"],
                        # the study's validation costs: greedy always (ASHA's rung metric), beams when searched
                        "val_seconds_greedy": s["seconds_b1"] * len(d["in_study"]) / len(d["larger"]),
                        "val_seconds_beam4": s["seconds_b4"] * len(d["in_study"]) / len(d["larger"])})
            row["train_seconds"] = row["epoch_time_s"] - row["val_seconds_greedy"]
        scored = [r for r in epochs if "val_bleu_greedy" in r]
        tests: dict[str, dict] = {}
        for beams in BEAMS:
            if not scored:
                break
            best = max(scored, key=lambda r: r[f"val_bleu_{'greedy' if beams == 1 else 'beam4'}"])["epoch"]
            for epoch in sorted({best, scored[-1]["epoch"]}):
                model = load_trained_model(config, data.tokenizer, Path(keep) / f"epoch_{epoch}",
                                           data.upstream).eval()
                metrics = score_split(model, test, data.tokenizer, config.replace(num_beams=beams), device,
                                   split="test")[0]
                tests[f"b{beams}_e{epoch}"] = {"test_bleu": metrics["test_bleu"], "test_loss": metrics["test_loss"]}
            tests[f"b{beams}_best_epoch"] = best
    return {**point, "epochs": epochs, "test": tests, "seconds": time.perf_counter() - started}


def _init_worker() -> None:
    os.environ.setdefault("T5STUDY_PROGRESS", "off")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/search_table.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    p.add_argument("--regimes", default=",".join(TRAINED), help="trained regimes (default scratch,decoder,full)")
    p.add_argument("--lrs", type=int, default=7, help="learning rates on the log grid (default 7)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per point, 0 … N-1 (default 2)")
    p.add_argument("--workers", type=int, default=2, help="points trained at once, one thread each (default 2)")
    p.add_argument("--batches", help="batch sizes, comma-separated (default: every size the spaces list)")
    p.add_argument("--only", help="only these configurations, regime:lr:batch comma-separated (the oracle's "
                                  "candidates trained at more seeds); --lrs and --batches are then ignored")
    p.add_argument("--data", help="pairs to use instead of the quick preset's bundled corpus (its other settings kept)")
    p.add_argument("--max-train-pairs", type=int, help="training pairs instead of the quick preset's 2,000 (a budget at "
                                                       "which real text is learned; the rest of the preset kept)")
    p.add_argument("--cache-dir", help="the study's cache (default: the study's own default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the table (default {DEFAULT_OUT.relative_to(common.ROOT)})")
    return p


def plan(args: argparse.Namespace) -> tuple[Config, list[dict]]:
    from study.model.regimes import parse_regimes
    from study.tuning.space import default_search_space_path, load_search_space

    regimes = parse_regimes(args.regimes)
    for flag in ("lrs", "seeds", "workers"):
        common.positive(flag, getattr(args, flag))
    spaces = {r: load_search_space(default_search_space_path(r)) for r in regimes if r != "upstream"}
    if not spaces:
        raise StudyError("--regimes names no trained regime; pass some of scratch,decoder,full")
    lrs = lr_grid(spaces, args.lrs)
    batches = sorted({b for s in spaces.values() for b in s.search["batch_size"]["values"]})
    if args.batches:
        batches = [common.positive("batches", int(b)) for b in args.batches.split(",")]
    configs = [(r, lr, b) for lr in lrs for b in batches for r in spaces]
    points = [{"regime": "upstream", "lr": None, "batch_size": None, "seed": 0, "fixed": {}}]
    if args.only:
        configs = []
        for item in args.only.split(","):
            try:
                r, lr, b = item.split(":")
                configs.append((r, float(lr), int(b)))
            except ValueError:
                raise StudyError(f"--only {item!r} is not regime:lr:batch (for example decoder:0.00215:16)") from None
            if r not in spaces:
                raise StudyError(f"--only names {r!r}, not one of --regimes {','.join(spaces)}")
        points = []
    # Seed by seed, the regimes side by side: an interrupted table has every regime's whole grid at the first
    # seeds rather than one regime's every seed.
    points += [{"regime": r, "lr": lr, "batch_size": b, "seed": seed, "fixed": dict(spaces[r].fixed)}
               for seed in range(args.seeds) for (r, lr, b) in configs]
    if args.max_train_pairs is not None:
        common.positive("max-train-pairs", args.max_train_pairs)
    return preset_config(args.cache_dir, args.data, args.max_train_pairs), points


def run(args: argparse.Namespace) -> int:
    config, points = plan(args)
    record = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    done = {point_key(p): p for p in record.get("points", [])}
    # A table continued under other settings would mix two budgets in one oracle: refuse, name the difference.
    kept = record.get("config", {})
    changed = [k for k in ("data", "max_train_pairs", "max_eval_pairs", "max_epochs") if k in kept
               and kept[k] != config.to_dict().get(k)]
    if done and changed:
        raise StudyError(f"{args.out} was made with other settings ({', '.join(f'{k}={kept[k]}' for k in changed)}); "
                         "continue it with those, or pass another --out")
    todo = [p for p in points if point_key(p) not in done]
    print(f"{len(points)} points, {len(done)} in {args.out}, {len(todo)} to train", flush=True)
    command = "python benchmarks/search_table.py " + " ".join(args.argv)
    # Every command that added points, in order (a table grown by --only keeps how its grid was made).
    commands = record.get("commands", [record["command"]] if "command" in record else [])
    meta = {"benchmark": NAME, "command": command, "commands": commands + [command],
            "preset": "quick", "config": config.to_dict(), "larger_validation": LARGER_VALIDATION,
            "beams": list(BEAMS), **common.run_info(args, "cpu")}
    start = time.time()
    # Data and the tiny upstream prepared once here (cached), so the workers only read the cache.
    _load(config)
    _DATA.clear()
    with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
        futures = {pool.submit(run_point, p, config.to_dict()): p for p in todo}
        for k, future in enumerate(as_completed(futures), 1):
            try:
                result = future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)  # a broken point stops the table now, not after the rest
                raise
            done[point_key(result)] = result
            record = {**meta, "points": sorted(done.values(), key=point_key)}
            common.write_json(args.out, record)  # after every point: an interruption loses one point at most
            print(f"[{k}/{len(todo)}] {point_key(result)}: {result['seconds']:.0f} s "
                  f"({(time.time() - start) / 60:.1f} min so far)", flush=True)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
