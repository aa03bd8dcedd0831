"""What pre-training buys, with everything else equal: the trained regimes at one learning rate, curve by curve.

    python benchmarks/pretraining_gain.py                                   # the quick preset's data and model
    python benchmarks/pretraining_gain.py --data ../shared/data/eng-fra.tsv --max-train-pairs 20000 --epochs 4

The study compares each regime at its *own* best hyperparameters; this benchmark removes the search: the
same data, seed, batch order, learning rate and epochs for `scratch`, `full` (and `decoder` if asked), so the
only difference is the starting weights (and, for `decoder`, what trains). The tiny model's upstream comes
from the same cache the study uses (pretrained once if missing, with `--pretrain-steps`). Reports
validation BLEU and loss after every epoch, and the full-minus-scratch BLEU per epoch; then, for each regime's
last epoch, BLEU's breakdown (n-gram precisions, brevity penalty) and `--show N` of its translations, which
tell a fluent model that writes the wrong content from one that is short or repeats itself. JSON goes to
benchmarks/out/pretraining_gain.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/pretraining_gain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import (  # noqa: E402
    PRESETS,  # noqa: E402
    Config,
    add_config_flags,
    config_from_flags,
)
from study.metrics.generation import score_split  # noqa: E402
from study.metrics.scoring import (
    bleu_parts,  # noqa: E402
    translation_scores,  # noqa: E402
)
from study.model.device import pick_device  # noqa: E402
from study.training.checkpoints import load_trained_model  # noqa: E402
from study.training.loop import fit  # noqa: E402
from study.training.pretraining import prepare_data_with_upstream  # noqa: E402

CONFIG_FLAGS = ["data", "model", "max_train_pairs", "max_eval_pairs", "epochs", "lr", "batch_size", "num_beams",
                "pretrain_steps", "decoder_embedding", "seed", "data_seed", "cache_dir", "device"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--regimes", nargs="+", default=["scratch", "full"], choices=["scratch", "decoder", "full"],
                   help="trained regimes to compare (default: scratch full)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--show", type=int, default=5, metavar="N",
                   help="validation translations to print per regime at its last epoch (default 5)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/pretraining_gain.json)")
    add_config_flags(p, CONFIG_FLAGS)
    return p


def run(args: argparse.Namespace) -> int:
    # The quick preset's settings, with its learning rate fixed to the middle of the regimes' ranges.
    base = Config(**PRESETS["quick"]["config"]).replace(lr=2e-3, torch_threads=args.threads)
    config = config_from_flags(args, base)
    device = common.setup_torch(argparse.Namespace(threads=args.threads, device=config.device))
    data = prepare_data_with_upstream(config, need_upstream=any(r != "scratch" for r in args.regimes))
    curves: dict[str, list[dict]] = {}
    last: dict[str, dict] = {}
    for regime in args.regimes:
        curves[regime] = []
        start = time.perf_counter()
        regime_config = config.replace(regime=regime)
        with tempfile.TemporaryDirectory() as checkpoint:

            def report(metrics: dict, save, regime: str = regime, start: float = start,
                       checkpoint: str = checkpoint) -> None:
                row = {"epoch": metrics["epoch"], "val_bleu": metrics["val_bleu"], "val_loss": metrics["val_loss"],
                       "val_chrf": metrics["val_chrf"], "seconds": time.perf_counter() - start,
                       "diverged": bool(metrics.get("diverged"))}
                curves[regime].append(row)
                print(f"{regime:8s} epoch {row['epoch']}  val BLEU {row['val_bleu']:6.2f}  val loss "
                      f"{row['val_loss']:.3f}  ({row['seconds']:.0f} s)", flush=True)
                if save is not None and metrics["epoch"] == config.epochs:
                    save(checkpoint)  # the last epoch's weights, for the translations below

            fit(regime_config, data, report)
            if curves[regime] and not curves[regime][-1].get("diverged"):
                last[regime] = last_epoch_translations(regime_config, data, checkpoint, args.show)
    record = {"benchmark": "pretraining_gain", "config": config.to_dict(), "upstream": data.upstream_dir,
              "counts": data.counts, "curves": curves, "last_epoch": last, "run": common.run_info(args, device)}
    return common.finish(args, "pretraining_gain", record, print_report)


def last_epoch_translations(config: Config, data, checkpoint: str, show: int) -> dict:
    """BLEU's parts and a few translations of the validation split, from the last epoch's weights."""
    model = load_trained_model(config, data.tokenizer, checkpoint, data.upstream)
    device = pick_device(config.device)
    _, hypotheses, references = score_split(model.to(device), data.validation, data.tokenizer, config, device)
    return {**translation_scores(hypotheses, references), **bleu_parts(hypotheses, references),
            "samples": [{"source": s, "reference": r, "hypothesis": h}
                        for s, r, h in zip(data.validation["en"][:show], references[:show], hypotheses[:show])]}


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
    for regime, seen in record.get("last_epoch", {}).items():
        p = "/".join(f"{seen[f'bleu_p{n}']:.1f}" for n in (1, 2, 3, 4))
        print(f"\n{regime}, last epoch: BLEU {seen['bleu']:.2f} = n-gram precisions {p} x brevity penalty "
              f"{seen['brevity_penalty']:.3f} (output {seen['length_ratio']:.3f}x the references' length)")
        for sample in seen["samples"]:
            print(f"  EN  {sample['source']}\n  REF {sample['reference']}\n  OUT {sample['hypothesis']}")


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
