"""What pre-training buys, with everything else equal: the trained regimes at one learning rate, curve by curve.

    python benchmarks/pretraining_gain.py                                   # the quick preset's data and model
    python benchmarks/pretraining_gain.py --data ../shared/data/eng-fra.tsv --max-train-pairs 20000 --epochs 4

The study compares each regime at its *own* best hyperparameters; this benchmark removes the search: the
same data, seed, batch order, learning rate and epochs for `scratch`, `full` (and `decoder` if asked), so the
only difference is the starting weights (and, for `decoder`, what trains). The tiny model's upstream comes
from the same cache the study uses (pretrained once if missing, with `--pretrain-steps`). Reports
validation BLEU and loss after every epoch, and the full-minus-scratch BLEU per epoch. JSON goes to
benchmarks/out/pretraining_gain.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/pretraining_gain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import Config, add_config_flags, config_from_flags  # noqa: E402
from study.run import PRESETS  # noqa: E402
from study.train import fit, prepare_data  # noqa: E402

CONFIG_FLAGS = ["data", "model", "max_train_pairs", "max_eval_pairs", "epochs", "lr", "batch_size", "num_beams",
                "pretrain_steps", "seed", "data_seed", "cache_dir", "device"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--regimes", nargs="+", default=["scratch", "full"], choices=["scratch", "decoder", "full"],
                   help="trained regimes to compare (default: scratch full)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/pretraining_gain.json)")
    add_config_flags(p, CONFIG_FLAGS)
    return p


def run(args: argparse.Namespace) -> int:
    # The quick preset's settings, with its learning rate fixed to the middle of the regimes' ranges.
    base = Config(**PRESETS["quick"]["config"]).replace(lr=2e-3, torch_threads=args.threads)
    config = config_from_flags(args, base).validate()
    device = common.setup_torch(argparse.Namespace(threads=args.threads, device=config.device))
    data = prepare_data(config, need_upstream=any(r != "scratch" for r in args.regimes))
    curves: dict[str, list[dict]] = {}
    for regime in args.regimes:
        curves[regime] = []
        start = time.perf_counter()

        def report(metrics: dict, save, regime: str = regime, start: float = start) -> None:
            row = {"epoch": metrics["epoch"], "val_bleu": metrics["val_bleu"], "val_loss": metrics["val_loss"],
                   "val_chrf": metrics["val_chrf"], "seconds": time.perf_counter() - start}
            curves[regime].append(row)
            print(f"{regime:8s} epoch {row['epoch']}  val BLEU {row['val_bleu']:6.2f}  val loss "
                  f"{row['val_loss']:.3f}  ({row['seconds']:.0f} s)", flush=True)

        fit(config.replace(regime=regime), data, report)
    record = {"benchmark": "pretraining_gain", "config": config.to_dict(), "upstream": data.upstream_dir,
              "counts": data.counts, "curves": curves, "run": common.run_info(args, device)}
    return common.finish(args, "pretraining_gain", record, print_report)


def print_report(record: dict) -> None:
    curves = record["curves"]
    regimes = list(curves)
    epochs = max(len(c) for c in curves.values())
    both = "full" in curves and "scratch" in curves
    headers = ["epoch"] + [f"{r} BLEU" for r in regimes] + [f"{r} loss" for r in regimes]
    headers += ["full - scratch BLEU"] if both else []

    def at(regime: str, i: int, key: str) -> float | None:  # None past a regime's last epoch (a diverged trial)
        return curves[regime][i][key] if i < len(curves[regime]) else None

    rows = []
    for i in range(epochs):
        row: list = [i + 1] + [at(r, i, "val_bleu") for r in regimes] + [at(r, i, "val_loss") for r in regimes]
        if both:
            full, scratch = at("full", i, "val_bleu"), at("scratch", i, "val_bleu")
            row.append(None if full is None or scratch is None else full - scratch)
        rows.append(row)
    c = record["config"]
    print(f"\nvalidation after each epoch: {c['data']}, {c['model']}, {record['counts'].get('train')} training pairs, "
          f"lr {c['lr']:g}, batch {c['batch_size']}, seed {c['seed']}")
    print(common.format_table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
