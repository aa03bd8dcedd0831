"""Calibration of the study's test of "regime A beats regime B": does an interval from 3 seeds cover what
other seeds of the same configuration show?

    python benchmarks/calibration.py                          # `scratch`, quick preset data, tiny model, 10 seeds
    python benchmarks/calibration.py --seeds 12 --lr 3e-3 --batch-size 16
    python benchmarks/calibration.py --from-study results/<study> --regime full   # that regime's best configuration

One configuration (the quick preset's, with `--lr`/`--batch-size`; or `--from-study`'s best.json, trained as
the study's seed re-runs are: `epochs` as the schedule, stopped at the best trial's selected epoch) is trained
with `--seeds` seeds through the study's own `fit` (`study.training.loop`) and each run is scored once on the
test split (`study.metrics.generation.evaluate`, as test scoring does). Run 0 is the comparator B, one fixed
model. Then, for `--draws` random choices among the other runs:

- **coverage**: 3 runs as regime A; the 95 % interval of A − B from `seeded_bootstrap` (3 seeds of A, B's one
  run, test sources clustered), against the target: the mean BLEU of the runs not drawn, minus B's. How
  often the interval covers it; and the same for the sentence-only interval of one run of A against B
  (sacrebleu's paired bootstrap: what the report said before seeds entered the test).
- **false findings**: two disjoint groups of 3 runs, the same configuration (no true difference): how often
  the seeded test calls a finding (p < 0.05, interval excluding zero), and how often the sentence-only test
  of one run of each does.

JSON: benchmarks/out/calibration.json. Training runs one after the other, `--threads` torch threads each.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/calibration.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from study.config import PRESETS, Config, StudyError, add_config_flags, config_from_flags  # noqa: E402
from study.metrics.generation import evaluate  # noqa: E402
from study.metrics.significance import seeded_bootstrap  # noqa: E402
from study.model.device import pick_device  # noqa: E402
from study.training.checkpoints import load_trained_model  # noqa: E402
from study.training.loop import fit  # noqa: E402
from study.training.upstream import prepare_data_and_upstream  # noqa: E402

CONFIG_FLAGS = ["data", "model", "regime", "max_train_pairs", "max_eval_pairs", "max_test_pairs", "epochs", "lr",
                "batch_size", "num_beams", "pretrain_steps", "cache_dir", "device"]
GROUP = 3  # seeds per regime in the quick preset's proposed budget (it runs 2 today)


class _Stop(Exception):
    """Raised from `fit`'s report once the selected epoch is saved: the run is as long as the best trial's."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="runs of the configuration, seeds 0..N-1 (default 10)")
    p.add_argument("--from-study", type=Path, metavar="STUDY",
                   help="train the best configuration of --regime in this study folder (its best.json)")
    p.add_argument("--draws", type=int, default=200, help="random draws of seeds per figure (default 200)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per test (default 1000)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/calibration.json)")
    add_config_flags(p, CONFIG_FLAGS)
    return p


def configuration(args: argparse.Namespace) -> tuple[Config, int]:
    """The Config to train and the epoch to stop at (the best trial's selected epoch, or all of them)."""
    if args.from_study is None:
        base = Config(**PRESETS["quick"]["config"]).replace(regime="scratch", lr=3e-3, batch_size=16)
        config = config_from_flags(args, base)
        return config.replace(torch_threads=args.threads), config.epochs
    path = args.from_study / getattr(args, "regime", "full") / "best.json"
    if not path.is_file():
        raise StudyError(f"{path} is missing: pass a finished study and one of its trained regimes (--regime)")
    row = json.loads(path.read_text(encoding="utf-8"))
    config = Config.from_dict(row["config"]).replace(torch_threads=args.threads)
    return config, int(row.get("best_epoch") or config.epochs)


def train_and_score(config: Config, data, stop_at: int) -> tuple[list[str], int]:
    """One run: `fit` for `stop_at` epochs (the schedule of `config.epochs`), its last epoch scored on test;
    returns its test translations and the last epoch it trained."""
    seen: list[int] = []
    with tempfile.TemporaryDirectory() as checkpoint:
        def report(metrics: dict, save) -> None:
            seen.append(metrics["epoch"])
            if metrics.get("diverged"):
                raise common.BenchmarkError(f"seed {config.seed} diverged at epoch {metrics['epoch']}; lower --lr")
            if save is not None and metrics["epoch"] == stop_at:
                save(Path(checkpoint))
                raise _Stop

        try:
            fit(config, data, report)
        except _Stop:
            pass
        model = load_trained_model(config, data.tokenizer, checkpoint, data.upstream)
        device = pick_device(config.device)
        return evaluate(model.to(device), data.test, data.tokenizer, config, device, split="test")[1], seen[-1]


def calibrate(runs: list[list[str]], references: list[str], sources: list[str], draws: int, resamples: int,
              seed: int = 0) -> dict:
    """The coverage and false-finding figures from scored runs (run 0: the comparator B)."""
    if len(runs) < 2 * GROUP + 1:
        raise StudyError(f"calibration needs at least {2 * GROUP + 1} runs (two groups of {GROUP} and the "
                         f"comparator); got {len(runs)}: pass --seeds {2 * GROUP + 1} or more")
    from sacrebleu import corpus_bleu

    rng = random.Random(seed)
    bleu = [corpus_bleu(h, [references]).score for h in runs]
    comparator, others = runs[0], list(range(1, len(runs)))
    covered = {"seeded": 0, "sentences": 0}
    findings = {"seeded": 0, "sentences": 0}
    widths = {"seeded": [], "sentences": []}
    for _ in range(draws):
        drawn = rng.sample(others, GROUP)
        rest = [i for i in others if i not in drawn]
        target = sum(bleu[i] for i in rest) / len(rest) - bleu[0]
        for name, chosen in (("seeded", drawn), ("sentences", drawn[:1])):
            r = seeded_bootstrap(references, [runs[i] for i in chosen], [comparator],
                                 sources if name == "seeded" else None, resamples)
            covered[name] += r["ci_low"] <= target <= r["ci_high"]
            widths[name].append(r["ci_high"] - r["ci_low"])
        a, b = drawn, rng.sample(rest, GROUP)  # two groups of one configuration: any finding is false
        for name, (x, y, clusters) in (("seeded", (a, b, sources)), ("sentences", (a[:1], b[:1], None))):
            r = seeded_bootstrap(references, [runs[i] for i in x], [runs[i] for i in y], clusters, resamples)
            findings[name] += r["p_value"] < 0.05 and not r["ci_low"] <= 0 <= r["ci_high"]
    return {"runs": len(runs), "group": GROUP, "draws": draws, "bleu": bleu,
            "coverage": {k: v / draws for k, v in covered.items()},
            "mean_width": {k: sum(v) / len(v) for k, v in widths.items()},
            "false_findings": {k: v / draws for k, v in findings.items()}}


def run(args: argparse.Namespace) -> int:
    common.positive("seeds", args.seeds)
    config, stop_at = configuration(args)
    device = common.setup_torch(argparse.Namespace(threads=args.threads, device=config.device))
    from study.model.regimes import get_regime

    data = prepare_data_and_upstream(config, need_upstream=get_regime(config.regime).pretrained)
    runs, seconds, trained = [], [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        hypotheses, last = train_and_score(config.replace(seed=seed), data, stop_at)
        runs.append(hypotheses)
        trained.append(last)
        seconds.append(time.perf_counter() - start)
        print(f"seed {seed}: trained {stop_at} epoch(s) and scored on test in {seconds[-1]:.0f} s", flush=True)
    references, sources = list(data.test["fr"]), list(data.test["en"])
    figures = calibrate(runs, references, sources, args.draws, args.resamples)
    record = {"benchmark": "calibration", "config": config.to_dict(), "epochs_trained": stop_at,
              "last_epoch_of_each_run": trained,
              "test_pairs": len(references), "test_sources": len(set(sources)), "seconds_per_run": seconds,
              **figures, "run": common.run_info(args, device)}
    return common.finish(args, "calibration", record, print_report)


def print_report(record: dict) -> None:
    c, bleu = record["config"], record["bleu"]
    mean = sum(bleu) / len(bleu)
    sd = (sum((b - mean) ** 2 for b in bleu) / (len(bleu) - 1)) ** 0.5
    print(f"\n{record['runs']} runs of `{c['regime']}` (lr {c['lr']:g}, batch {c['batch_size']}, "
          f"{record['epochs_trained']} of {c['epochs']} epochs; {c['data']}, {c['model']}): test BLEU "
          f"{mean:.2f} ± {sd:.2f} (min {min(bleu):.2f}, max {max(bleu):.2f}) on {record['test_pairs']} rows, "
          f"{record['test_sources']} sources")
    print(common.format_table(
        ["test", "covers the other seeds' A − B", "mean 95 % CI width", "false findings (same config)"],
        [[f"seeded bootstrap, {record['group']} seeds vs 1", f"{record['coverage']['seeded']:.0%}",
          f"{record['mean_width']['seeded']:.2f}", f"{record['false_findings']['seeded']:.0%} "
          f"({record['group']} vs {record['group']} seeds)"],
         ["sentence-only, 1 seed vs 1", f"{record['coverage']['sentences']:.0%}",
          f"{record['mean_width']['sentences']:.2f}", f"{record['false_findings']['sentences']:.0%} (1 vs 1)"]]))
    print(f"({record['draws']} draws of seeds; nominal coverage 95 %, nominal false findings at most 5 %)")


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
