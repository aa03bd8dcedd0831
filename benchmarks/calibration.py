"""Calibration of the study's test of "regime A beats regime B": does an interval from 3 or 5 seeds cover what
other seeds of the same configuration show, and how often are two groups of one configuration called different?

    python benchmarks/calibration.py                          # `scratch`, quick preset data, tiny model, 10 seeds
    python benchmarks/calibration.py --seeds 12 --lr 3e-3 --batch-size 16
    python benchmarks/calibration.py --from-study results/<study> --regime decoder --seeds 12   # what a study selected
    python benchmarks/calibration.py --from-runs benchmarks/out/calibration_runs   # re-analyse saved runs, no training

One configuration (the quick preset's, with `--lr`/`--batch-size`; or `--from-study`'s best.json, trained as
the study's seed re-runs are: `epochs` as the schedule, stopped at the best trial's selected epoch) is trained
with `--seeds` seeds through the study's own `fit` (`study.training.loop`) and each run is scored once on the
test split (`study.metrics.generation.score_split`, as test scoring does). The runs' translations are saved
(`--save-runs`, default benchmarks/out/calibration_runs/) so that `--from-runs` re-analyses them without
training. Run 0 is the comparator B, one fixed model. Then, for each group size g of 3 and 5 (where there are
2g + 1 runs) and `--draws` random choices among the other runs, three tests:

- `t_test`: the study's test (`significance.seed_runs_test`, `verdicts.decide`): Welch's t over the g runs with
  the sentences' variance added, two-sided;
- `seeded_bootstrap`: the rule before issue 43 (`significance.seeded_bootstrap`: seed runs and test sources
  resampled, sacrebleu's p, a finding when p < 0.05 and the interval excludes zero);
- `sentences`: one run of each, sacrebleu's paired bootstrap (two fixed models).

**coverage**: g runs as A against B's one model; how often A − B's 95 % interval covers the mean BLEU of the runs
not drawn minus B's (that target is itself a mean of a few runs, so coverage is judged against a noisy target).
**false findings**: two disjoint groups of g runs of the same configuration; how often each test calls a finding.

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
from study.analysis.verdicts import ALPHA, FINDING, decide  # noqa: E402
from study.config import PRESETS, Config, StudyError, add_config_flags, config_from_flags  # noqa: E402
from study.metrics.generation import score_split  # noqa: E402
from study.metrics.significance import seed_runs_test, seeded_bootstrap  # noqa: E402
from study.model.device import pick_device  # noqa: E402
from study.training.checkpoints import load_trained_model  # noqa: E402
from study.training.loop import fit  # noqa: E402
from study.training.pretraining import prepare_data_with_upstream  # noqa: E402

CONFIG_FLAGS = ["data", "model", "regime", "max_train_pairs", "max_eval_pairs", "max_test_pairs", "epochs", "lr",
                "batch_size", "num_beams", "pretrain_steps", "cache_dir", "device"]
GROUPS = (3, 5)  # fresh seed runs per regime whose calibration is measured
TESTS = ("t_test", "seeded_bootstrap", "sentences")


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
    p.add_argument("--save-runs", type=Path, metavar="DIR",
                   help="where the runs' test translations go (default benchmarks/out/calibration_runs)")
    p.add_argument("--from-runs", type=Path, metavar="DIR",
                   help="re-analyse the runs a previous run saved in DIR (runs.json, ref/src/hyp files): no training")
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
        return score_split(model.to(device), data.test, data.tokenizer, config, device, split="test")[1], seen[-1]


def _interval_and_finding(name: str, references, a: list[list[str]], b: list[list[str]], sources, resamples: int,
                          fixed_b: bool = False) -> tuple[float, float, bool]:
    """(ci_low, ci_high, a finding?) of one test of A − B."""
    if name == "t_test":
        r = seed_runs_test(references, a, b, sources, resamples, fixed_b=fixed_b, alpha=ALPHA)
        low, high, trains = r["ci_low"], r["ci_high"], (True, not fixed_b)
        if r["difference"] < 0:  # the study's label puts the higher mean first (the test is two-sided: B − A)
            r = {**r, "difference": -r["difference"], "n_a": r["n_b"], "n_b": r["n_a"]}
            trains = trains[::-1]
        verdict = decide(r, p_adjusted=r["p_value"], family=1, trains_a=trains[0], trains_b=trains[1])["verdict"]
        return low, high, verdict == FINDING
    r = seeded_bootstrap(references, a, b, sources if name == "seeded_bootstrap" else None, resamples)
    return r["ci_low"], r["ci_high"], bool(r["p_value"] < ALPHA and not r["ci_low"] <= 0 <= r["ci_high"])


def calibrate(runs: list[list[str]], references: list[str], sources: list[str] | None, draws: int, resamples: int,
              seed: int = 0) -> dict:
    """Coverage and false findings of each test in TESTS, per group size in GROUPS that the runs allow (run 0:
    the comparator B)."""
    groups = [g for g in GROUPS if len(runs) >= 2 * g + 1]
    if not groups:
        g = GROUPS[0]
        raise StudyError(f"calibration needs at least {2 * g + 1} runs (two groups of {g} and the comparator); got "
                         f"{len(runs)}: pass --seeds {2 * g + 1} or more ({2 * GROUPS[-1] + 1} for groups of "
                         f"{GROUPS[-1]} too)")
    from sacrebleu import corpus_bleu

    rng = random.Random(seed)
    bleu = [corpus_bleu(h, [references]).score for h in runs]
    comparator, others = runs[0], list(range(1, len(runs)))
    by_group = {}
    for g in groups:
        covered, widths, findings = ({t: 0 for t in TESTS}, {t: [] for t in TESTS}, {t: 0 for t in TESTS})
        for _ in range(draws):
            drawn = rng.sample(others, g)
            rest = [i for i in others if i not in drawn]
            target = sum(bleu[i] for i in rest) / len(rest) - bleu[0]
            other = rng.sample(rest, g)  # a second group of the same configuration: any finding is false
            for name in TESTS:
                chosen = drawn[:1] if name == "sentences" else drawn
                low, high, _ = _interval_and_finding(name, references, [runs[i] for i in chosen], [comparator],
                                                     sources, resamples, fixed_b=True)
                covered[name] += low <= target <= high
                widths[name].append(high - low)
                x, y = (drawn[:1], other[:1]) if name == "sentences" else (drawn, other)
                findings[name] += _interval_and_finding(name, references, [runs[i] for i in x], [runs[i] for i in y],
                                                        sources, resamples)[2]
        by_group[str(g)] = {"coverage": {k: v / draws for k, v in covered.items()},
                            "mean_width": {k: sum(v) / len(v) for k, v in widths.items()},
                            "false_findings": {k: v / draws for k, v in findings.items()}}
    return {"runs": len(runs), "groups": groups, "draws": draws, "bleu": bleu, "by_group": by_group}


def save_runs(folder: Path, runs: list[list[str]], references: list[str], sources: list[str], info: dict) -> Path:
    """Each run's test translations (hyp.<k>.txt), the references and sources, and runs.json: what
    `--from-runs` reads back."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("ref.txt", references), ("src.txt", sources), *((f"hyp.{k}.txt", h) for k, h in enumerate(runs))):
        (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    (folder / "runs.json").write_text(json.dumps({**info, "runs": len(runs)}, indent=2, default=str) + "\n",
                                      encoding="utf-8")
    return folder


def load_runs(folder: Path) -> tuple[list[list[str]], list[str], list[str], dict]:
    """What `save_runs` wrote: (runs, references, sources, info); one clear error where it is incomplete."""
    try:
        info = json.loads((folder / "runs.json").read_text(encoding="utf-8"))
        read = lambda name: (folder / name).read_text(encoding="utf-8").split("\n")[:-1]  # noqa: E731
        references, sources = read("ref.txt"), read("src.txt")
        runs = [read(f"hyp.{k}.txt") for k in range(int(info["runs"]))]
    except (OSError, ValueError, KeyError) as err:
        raise StudyError(f"{folder} holds no complete saved calibration runs ({type(err).__name__}: {err}); "
                         "run benchmarks/calibration.py with --save-runs first") from None
    if any(len(h) != len(references) for h in runs) or len(sources) != len(references):
        raise StudyError(f"{folder}: the saved runs, references and sources differ in length")
    return runs, references, sources, info


def run(args: argparse.Namespace) -> int:
    if args.from_runs is not None:
        runs, references, sources, info = load_runs(args.from_runs)
        figures = calibrate(runs, references, sources, args.draws, args.resamples)
        record = {"benchmark": "calibration", **{k: v for k, v in info.items() if k != "runs"},
                  "runs_dir": str(args.from_runs), "test_pairs": len(references), "test_sources": len(set(sources)),
                  **figures, "run": common.run_info(args, common.setup_torch(argparse.Namespace(
                      threads=args.threads, device="cpu")))}
        return common.finish(args, "calibration", record, print_report)
    common.positive("seeds", args.seeds)
    config, stop_at = configuration(args)
    device = common.setup_torch(argparse.Namespace(threads=args.threads, device=config.device))
    from study.model.regimes import get_regime

    data = prepare_data_with_upstream(config, need_upstream=get_regime(config.regime).pretrained)
    runs, seconds, trained = [], [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        hypotheses, last = train_and_score(config.replace(seed=seed), data, stop_at)
        runs.append(hypotheses)
        trained.append(last)
        seconds.append(time.perf_counter() - start)
        print(f"seed {seed}: trained {stop_at} epoch(s) and scored on test in {seconds[-1]:.0f} s", flush=True)
    references, sources = list(data.test["fr"]), list(data.test["en"])
    info = {"config": config.to_dict(), "epochs_trained": stop_at, "last_epoch_of_each_run": trained,
            "seconds_per_run": seconds}
    saved = save_runs(args.save_runs or common.OUT_DIR / "calibration_runs", runs, references, sources, info)
    figures = calibrate(runs, references, sources, args.draws, args.resamples)
    record = {"benchmark": "calibration", **info, "runs_dir": str(saved),
              "test_pairs": len(references), "test_sources": len(set(sources)),
              **figures, "run": common.run_info(args, device)}
    return common.finish(args, "calibration", record, print_report)


NAMES = {"t_test": "t-test over fresh seeds (the study's)", "seeded_bootstrap": "two-level bootstrap (before #43)",
         "sentences": "sentence-only, 1 run vs 1 (sacrebleu)"}


def print_report(record: dict) -> None:
    c, bleu = record["config"], record["bleu"]
    mean = sum(bleu) / len(bleu)
    sd = (sum((b - mean) ** 2 for b in bleu) / (len(bleu) - 1)) ** 0.5
    print(f"\n{record['runs']} runs of `{c['regime']}` (lr {c['lr']:g}, batch {c['batch_size']}, "
          f"{record['epochs_trained']} of {c['epochs']} epochs; {c['data']}, {c['model']}): test BLEU "
          f"{mean:.2f} ± {sd:.2f} (min {min(bleu):.2f}, max {max(bleu):.2f}) on {record['test_pairs']} rows, "
          f"{record['test_sources']} sources")
    rows = []
    for g, figures in record["by_group"].items():
        for name in TESTS:
            one = name == "sentences"
            rows.append([f"{NAMES[name]}, {1 if one else g} run(s)", f"{figures['coverage'][name]:.0%}",
                         f"{figures['mean_width'][name]:.2f}", f"{figures['false_findings'][name]:.0%} "
                         f"({'1 vs 1' if one else f'{g} vs {g}'})"])
    print(common.format_table(["test", "covers the other seeds' A − B", "mean 95 % CI width",
                               "false findings (same config)"], rows))
    print(f"({record['draws']} draws of seeds per group size; nominal coverage 95 %, nominal false findings at "
          "most 5 %)")


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
