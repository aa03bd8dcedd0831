"""Search designs replayed over the search table: hundreds of studies per design, at no training cost.

    python benchmarks/search_replay.py --replays 200                  # every arm, docs/measurements' table
    python benchmarks/search_replay.py --arms random,tpe+asha --replays 20 --table /tmp/t.json

Reads the table `benchmarks/search_table.py` wrote (every configuration of the quick preset trained per seed,
every epoch scored) and

1. **the oracle**: per regime the configuration (lr, batch size, num_beams) with the best mean validation BLEU
   over seeds (each seed by its best epoch, as the study selects), its test BLEU mean ± sd over seeds, and
   so the regimes' true ranking at this budget, with whether each pair is separated by more than seed noise;
2. **rung signals**: within each regime, the Spearman correlation between each candidate rung metric at
   epochs 1 and 2 (greedy BLEU on the study's 200 validation sentences, on the larger validation subset,
   validation loss) and the final epoch's greedy BLEU on the larger subset;
3. **the replay**: each arm (a sampler x an early-stopping rule, optionally warm-started) searches every
   trained regime as the study does — the project's own `AshaAwareOptunaSearch`, sampler settings and
   `make_scheduler`, `num_samples` trials, `--concurrency` at once — with trials that read the table instead
   of training: a trial's lr snaps to the grid's nearest (in log), its seed is one of the recorded seeds drawn
   per point and replay, and its epochs arrive in the order their recorded durations imply (a simulated
   clock, as Syne Tune's `SimulatorCallback` replays tabulated curves). The study searches in trial order
   (`at_once` = `--concurrency`: Optuna proposes trial k knowing trials 0..k-at_once ended, ASHA judges trial n
   against trials n-at_once and earlier), so the order only decides when a trial may start, never what it
   does. The event loop calls the searcher and scheduler as Tune's controller does
   (`ray.tune.execution.tune_controller`: every result goes to the scheduler; on CONTINUE to the searcher;
   on STOP or the last epoch both hear `on_trial_complete`).

Per arm over `--replays` whole studies: the best validation BLEU found and its test BLEU, the regret against
the oracle (oracle config's mean test BLEU minus the found config's), epochs used, how often the oracle's
best configuration was stopped early, and how often the whole study ranks the regimes as the oracle does.
`--out` writes JSON with one record per arm (`chosen: true` on the quick preset's).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/search_replay.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.search_table import DEFAULT_OUT as DEFAULT_TABLE  # noqa: E402
from study.config import PRESETS, StudyError  # noqa: E402

NAME = "search_replay"
STARTUP_SECONDS = 2.0  # a trial's start in a reused worker (model build, data from the object store)
# Early-stopping rules: the search space's `asha` section each arm runs with (None: no early stopping).
SCHEDULERS: dict[str, dict | None] = {
    "none": None,
    "asha": {"grace_period": 1, "reduction_factor": 2},  # today: greedy BLEU from epoch 1
    "asha_loss": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss"},
    "asha_grace2": {"grace_period": 2, "reduction_factor": 2},
    "asha_patient": {"grace_period": 1, "reduction_factor": 2, "min_results": 3},
    "asha_loss_patient": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss", "min_results": 3},
    "asha_loss_patient2": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss", "min_results": 2},
    "asha_loss_rf3_patient": {"grace_period": 1, "reduction_factor": 3, "rung_metric": "val_loss", "min_results": 3},
}
SAMPLERS = ("random", "tpe", "gp")
# Known-good points every warm-started arm gets alike, known before the table: the T5 paper's fine-tuning
# learning rate (1e-3) and beam search (4 beams), with the previous quick preset's winning batch size (16, the
# most steps in 3 epochs; issue 29). The first trial of each regime runs it; the sampler proposes the rest.
WARM_POINTS = [{"lr": 1e-3, "batch_size": 16, "num_beams": 4}]
CHOSEN = "tpe+asha_loss_patient2+warm"  # the quick preset's search (search_spaces/{scratch,decoder,full}.yaml)


# Optuna's GP sampler fits a Gaussian process at every proposal (~1 s on one core here, against TPE's ms):
# its arms are these few, each replayed `--gp-replays` times, so that every arm together fits in 30 minutes.
GP_SCHEDULERS = ("none", "asha", "asha_loss_patient")


def arm_names() -> list[str]:
    names = []
    for sampler in SAMPLERS:
        for scheduler in SCHEDULERS:
            if sampler == "gp" and scheduler not in GP_SCHEDULERS:
                continue
            name = "random" if (sampler, scheduler) == ("random", "none") else f"{sampler}+{scheduler}"
            names += [name] if sampler == "gp" else [name, f"{name}+warm"]
    return names


def parse_arm(name: str) -> tuple[str, str, bool]:
    """arm name -> (sampler, scheduler, warm)."""
    warm = name.endswith("+warm")
    base = name.removesuffix("+warm")
    sampler, _, scheduler = ("random+none" if base == "random" else base).partition("+")
    if sampler not in SAMPLERS or scheduler not in SCHEDULERS:
        raise StudyError(f"unknown arm {name!r}; arms are {', '.join(arm_names())}")
    return sampler, scheduler, warm


# ------------------------------------------------------------------------------------------------ the table


class Table:
    """The search table, indexed: (regime, lr, batch) -> {seed: point record}."""

    def __init__(self, record: dict) -> None:
        self.record = record
        self.points: dict[tuple, dict[int, dict]] = defaultdict(dict)
        self.upstream: dict | None = None
        for p in record["points"]:
            if p["regime"] == "upstream":
                self.upstream = p["upstream"]
            else:
                self.points[(p["regime"], p["lr"], p["batch_size"])][p["seed"]] = p
        self.regimes = sorted({k[0] for k in self.points})
        self.epochs = record["config"]["epochs"]

    def snap(self, regime: str, lr: float, batch: int) -> float:
        """The grid's learning rate nearest to `lr` in log (among those trained at `batch`: a table still being
        filled may lack some)."""
        grid = [k[1] for k in self.points if k[0] == regime and k[2] == batch]
        if not grid:
            raise StudyError(f"the table has no {regime} point at batch size {batch}")
        return min(grid, key=lambda g: abs(math.log(g) - math.log(lr)))

    def seeds(self, regime: str, lr: float, batch: int) -> list[int]:
        return sorted(self.points[(regime, lr, batch)])

    def configs(self, regime: str) -> list[tuple[float, int, int]]:
        return [(lr, b, beams) for (r, lr, b) in self.points if r == regime for beams in self.record["beams"]]


def val_key(beams: int) -> str:
    return "val_bleu_greedy" if beams == 1 else "val_bleu_beam4"


def epoch_rows(point: dict, beams: int) -> list[dict]:
    """A point's epochs as a trial at `num_beams` reports them (val_bleu at its beams, greedy for the rungs)."""
    rows = []
    for e in point["epochs"]:
        if e["diverged"] or val_key(beams) not in e:
            rows.append({"epoch": e["epoch"], "val_bleu": 0.0, "val_bleu_greedy": 0.0, "val_loss": float("nan"),
                         "diverged": True, "seconds": e["epoch_time_s"]})
            break
        seconds = e["train_seconds"] + e["val_seconds_greedy"] + (e["val_seconds_beam4"] if beams > 1 else 0.0)
        rows.append({"epoch": e["epoch"], "val_bleu": e[val_key(beams)], "val_bleu_greedy": e["val_bleu_greedy"],
                     "val_loss": e["val_loss_study"], "diverged": False, "seconds": seconds})
    return rows


def best_epoch(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["val_bleu"])


def test_bleu(point: dict, beams: int, epoch: int) -> float | None:
    entry = point.get("test", {}).get(f"b{beams}_e{epoch}")
    return entry["test_bleu"] if entry else None


def config_quality(table: Table, regime: str, lr: float, batch: int, beams: int) -> dict:
    """A configuration over its seeds: best-epoch validation BLEU and that epoch's test BLEU, mean and sd."""
    vals, tests = [], []
    for seed in table.seeds(regime, lr, batch):
        point = table.points[(regime, lr, batch)][seed]
        rows = epoch_rows(point, beams)
        best = best_epoch(rows)
        vals.append(best["val_bleu"])
        tests.append(test_bleu(point, beams, best["epoch"]) or 0.0)
    return {"val_mean": statistics.fmean(vals), "test_mean": statistics.fmean(tests),
            "test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0, "seeds": len(tests)}


def oracle(table: Table) -> dict:
    """Per regime: the configuration with the best mean validation BLEU, and its test BLEU over seeds."""
    out: dict[str, Any] = {}
    for regime in table.regimes:
        scored = {cfg: config_quality(table, regime, *cfg) for cfg in table.configs(regime)}
        best = max(scored, key=lambda c: scored[c]["val_mean"])
        out[regime] = {"lr": best[0], "batch_size": best[1], "num_beams": best[2], **scored[best],
                       "configs": len(scored)}
    if table.upstream:
        val = table.upstream["validation"]
        beams = max(table.record["beams"], key=lambda b: val[f"study_bleu_b{b}"])
        out["upstream"] = {"num_beams": beams, "val_mean": val[f"study_bleu_b{beams}"],
                           "test_mean": table.upstream["test"][f"bleu_b{beams}"], "test_sd": 0.0, "seeds": 1}
    ranking = sorted(out, key=lambda r: -out[r]["test_mean"])
    pairs = []
    for i, a in enumerate(ranking):
        for b in ranking[i + 1:]:
            gap = out[a]["test_mean"] - out[b]["test_mean"]
            noise = 2 * math.sqrt(out[a]["test_sd"] ** 2 / out[a]["seeds"] + out[b]["test_sd"] ** 2 / out[b]["seeds"])
            pairs.append({"a": a, "b": b, "difference": gap, "two_standard_errors": noise, "separated": gap > noise})
    return {"regimes": out, "ranking": ranking, "pairs": pairs}


def rung_signals(table: Table) -> dict:
    """Spearman correlation of each candidate rung metric at epochs 1 and 2 with the final epoch's greedy
    validation BLEU on the larger subset, over every (configuration, seed) of a regime."""
    import pandas as pd

    out: dict[str, dict] = {}
    for regime in table.regimes:
        rows = []
        for (r, _lr, _b), seeds in table.points.items():
            if r != regime:
                continue
            for point in seeds.values():
                e = point["epochs"]
                if len(e) < table.epochs or any(x["diverged"] for x in e):
                    continue
                row = {"final": e[-1]["larger_bleu_greedy"]}
                for k in range(min(2, table.epochs - 1)):
                    row[f"greedy_bleu_200_e{k + 1}"] = e[k]["val_bleu_greedy"]
                    row[f"greedy_bleu_larger_e{k + 1}"] = e[k]["larger_bleu_greedy"]
                    row[f"minus_val_loss_e{k + 1}"] = -e[k]["val_loss_study"]
                rows.append(row)
        frame = pd.DataFrame(rows)
        out[regime] = {c: float(frame[c].corr(frame["final"], method="spearman")) for c in frame if c != "final"}
        out[regime]["runs"] = len(frame)
    return out


# ----------------------------------------------------------------------------------------------- the replay


@dataclass
class _Trial:
    trial_id: str
    config: dict
    point: dict
    rows: list[dict]
    at: int = 0  # epochs reported so far
    clock: float = 0.0  # simulated time of its next report
    stopped_early: bool = False
    reported: list[dict] = field(default_factory=list)
    experiment_tag: str = ""  # "<number>_": the trial's number, as Tune's tag gives it to the study's ASHA


def _make_search(regime: str, sampler_name: str, scheduler: dict | None, warm: bool, seed: int, n_trials: int,
                 max_epochs: int, space, at_once: int | None = None):
    from study.tuning.searcher import (
        METRIC,
        MODE,
        AshaAwareOptunaSearch,
        make_sampler,
        make_scheduler,
        sampler_settings,
    )
    from study.tuning.space import SearchSpace

    settings = sampler_settings(sampler_name, regime, n_trials, seed)
    searcher = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=max_epochs, study_name=regime,
                                     sampler=make_sampler(settings), at_once=at_once, planned=n_trials,
                                     points_to_evaluate=[dict(p) for p in WARM_POINTS] if warm else None)
    searcher.set_search_properties(None, None, space.tune_space())
    sched = None
    if scheduler is not None:
        sched = make_scheduler(SearchSpace(search=space.search, fixed=space.fixed, asha=dict(scheduler),
                                           source=space.source), max_epochs, None, None, at_once=at_once)
    return searcher, sched


def replay_regime(table: Table, regime: str, arm: str, seed: int, n_trials: int, concurrency: int, space) -> dict:
    """One search of `regime` by `arm` over the table; returns its trials and the best one."""
    import random

    from ray.tune.schedulers import TrialScheduler

    sampler_name, scheduler_name, warm = parse_arm(arm)
    rng = random.Random(f"{seed}|{regime}")
    draws: dict[tuple, int] = {}  # the seed each point gets in this replay
    # in trial order, as the study searches (study.tuning.searcher): `concurrency` trials at once
    searcher, scheduler = _make_search(regime, sampler_name, SCHEDULERS[scheduler_name], warm, seed, n_trials,
                                       table.epochs, space, at_once=concurrency)
    running: dict[str, _Trial] = {}
    ended: list[_Trial] = []
    clock, started = 0.0, 0
    while started < n_trials or running:
        while len(running) < concurrency and started < n_trials:
            trial_id = f"{regime}_{started:03d}"
            config = searcher.suggest(trial_id)
            if config is None:  # an earlier trial it must see still runs: the next event frees it
                break
            started += 1
            batch = config["batch_size"]
            lr = table.snap(regime, config["lr"], batch)
            key = (regime, lr, batch)
            if key not in draws:
                draws[key] = rng.choice(table.seeds(*key))
            point = table.points[key][draws[key]]
            trial = _Trial(trial_id, config, point, epoch_rows(point, config["num_beams"]),
                           experiment_tag=f"{started}_")
            trial.clock = clock + STARTUP_SECONDS + trial.rows[0]["seconds"]
            if scheduler is not None:
                scheduler.on_trial_add(None, trial)
            running[trial_id] = trial
        trial = min(running.values(), key=lambda t: (t.clock, t.trial_id))
        clock = trial.clock
        row = trial.rows[trial.at]
        trial.at += 1
        result = {**{k: v for k, v in row.items() if k != "seconds"}, "training_iteration": trial.at}
        trial.reported.append(result)
        last = trial.at == len(trial.rows)
        decision = scheduler.on_trial_result(None, trial, result) if scheduler else TrialScheduler.CONTINUE
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial.trial_id, result)
        if decision == TrialScheduler.STOP or last:
            trial.stopped_early = trial.at < table.epochs and not row["diverged"]
            searcher.on_trial_complete(trial.trial_id, result)
            if scheduler is not None:
                scheduler.on_trial_complete(None, trial, result)
            ended.append(running.pop(trial.trial_id))
        else:
            trial.clock = clock + trial.rows[trial.at]["seconds"]
    best = max(ended, key=lambda t: (best_epoch(t.reported)["val_bleu"], -int(t.trial_id[-3:])))
    epoch = best_epoch(best.reported)
    lr, batch, beams = best.point["lr"], best.config["batch_size"], best.config["num_beams"]
    return {"best": {"lr": lr, "batch_size": batch, "num_beams": beams, "val_bleu": epoch["val_bleu"],
                     "epoch": epoch["epoch"], "test_bleu": test_bleu(best.point, beams, epoch["epoch"]),
                     "quality": config_quality(table, regime, lr, batch, beams)["test_mean"]},
            "epochs": sum(t.at for t in ended),
            "trials": [{"lr": t.point["lr"], "batch_size": t.config["batch_size"],
                        "num_beams": t.config["num_beams"], "epochs": t.at, "stopped_early": t.stopped_early}
                       for t in ended]}


def replay_study(table: Table, arm: str, seed: int, n_trials: int, concurrency: int, spaces: dict,
                 truth: dict) -> dict:
    """One whole study (every trained regime, and upstream from the table) replayed by `arm`."""
    regimes = {r: replay_regime(table, r, arm, seed, n_trials, concurrency, spaces[r]) for r in table.regimes}
    tests = {r: (v["best"]["test_bleu"] if v["best"]["test_bleu"] is not None else v["best"]["quality"])
             for r, v in regimes.items()}
    if "upstream" in truth["regimes"]:
        tests["upstream"] = truth["regimes"]["upstream"]["test_mean"]
    ranking = sorted(tests, key=lambda r: -tests[r])
    oracle_stopped = {}
    for r, v in regimes.items():
        o = truth["regimes"][r]
        oracle_stopped[r] = any(t["stopped_early"] for t in v["trials"]
                                if (t["lr"], t["batch_size"]) == (o["lr"], o["batch_size"]))
    separated = [(p["a"], p["b"]) for p in truth["pairs"] if p["separated"]]
    return {"seed": seed, "regimes": regimes, "ranking": ranking, "ranking_matches": ranking == truth["ranking"],
            # the pairs the oracle tells apart by more than seed noise, each in the oracle's order
            "separated_pairs_match": all(ranking.index(a) < ranking.index(b) for a, b in separated),
            "oracle_stopped": oracle_stopped}


def _replay_arm(args: tuple) -> dict:
    table_path, arm, seeds, n_trials, concurrency = args
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)
    table = Table(json.loads(Path(table_path).read_text(encoding="utf-8")))
    truth = oracle(table)
    spaces = _spaces(table.regimes)
    start = time.perf_counter()
    studies = [replay_study(table, arm, s, n_trials, concurrency, spaces, truth) for s in seeds]
    return summarize(arm, studies, truth, time.perf_counter() - start)


def _spaces(regimes: list[str]) -> dict:
    from study.tuning.space import default_search_space_path, load_search_space

    return {r: load_search_space(default_search_space_path(r)) for r in regimes}


def summarize(arm: str, studies: list[dict], truth: dict, seconds: float) -> dict:
    def mean_sd(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    per_regime = {}
    for r in truth["regimes"]:
        if r == "upstream":
            continue
        vals = [s["regimes"][r]["best"]["val_bleu"] for s in studies]
        tests = [s["regimes"][r]["best"]["test_bleu"] or s["regimes"][r]["best"]["quality"] for s in studies]
        regret = [truth["regimes"][r]["test_mean"] - s["regimes"][r]["best"]["quality"] for s in studies]
        per_regime[r] = {"best_val_bleu_mean": mean_sd(vals)[0], "test_bleu_mean": mean_sd(tests)[0],
                         "test_bleu_sd": mean_sd(tests)[1], "regret_mean": mean_sd(regret)[0],
                         "epochs_mean": statistics.fmean(s["regimes"][r]["epochs"] for s in studies),
                         "oracle_best_stopped_share": statistics.fmean(s["oracle_stopped"][r] for s in studies)}
    trained = list(per_regime)
    return {
        "arm": arm, "replays": len(studies), "chosen": arm == CHOSEN,
        "best_val_bleu_mean": statistics.fmean(per_regime[r]["best_val_bleu_mean"] for r in trained),
        "test_bleu_mean": statistics.fmean(per_regime[r]["test_bleu_mean"] for r in trained),
        "regret_mean": statistics.fmean(per_regime[r]["regret_mean"] for r in trained),
        "epochs_mean": sum(per_regime[r]["epochs_mean"] for r in trained),
        "oracle_best_stopped_share": statistics.fmean(
            any(s["oracle_stopped"].values()) for s in studies),
        "ranking_match_share": statistics.fmean(s["ranking_matches"] for s in studies),
        "separated_pairs_match_share": statistics.fmean(s["separated_pairs_match"] for s in studies),
        "per_regime": per_regime, "seconds": seconds,
    }


# ------------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/search_replay.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="the search table (search_table.py's JSON)")
    p.add_argument("--arms", default=",".join(arm_names()), help="comma list of arms (default: every arm)")
    p.add_argument("--replays", type=int, default=200, help="whole studies replayed per arm (default 200)")
    p.add_argument("--gp-replays", type=int, default=40,
                   help="whole studies replayed per GP-sampler arm (default 40: ~13 s each on one core)")
    p.add_argument("--num-samples", type=int, default=PRESETS["quick"]["num_samples"],
                   help="trials per regime (default: the quick preset's)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once (default 2, the quick study's)")
    p.add_argument("--workers", type=int, default=2, help="processes replaying arms at once (default 2)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/search_replay.json)")
    return p


def run(args: argparse.Namespace) -> int:
    if not args.table.is_file():
        raise StudyError(f"no search table at {args.table}; make one with `python benchmarks/search_table.py`")
    for flag in ("replays", "gp_replays", "num_samples", "concurrency", "workers"):
        common.positive(flag.replace("_", "-"), getattr(args, flag))
    arms = [a for a in args.arms.split(",") if a]
    for arm in arms:
        parse_arm(arm)
    table = Table(json.loads(args.table.read_text(encoding="utf-8")))
    if not table.regimes:
        raise StudyError(f"{args.table} has no trained points; let search_table.py run longer")
    truth = oracle(table)
    signals = rung_signals(table)
    start = time.time()
    jobs = [(str(args.table), arm, list(range(args.gp_replays if arm.startswith("gp") else args.replays)),
             args.num_samples, args.concurrency) for arm in arms]
    jobs.sort(key=lambda job: -len(job[2]) * (50 if job[1].startswith("gp") else 1))  # the slow arms first
    with ProcessPoolExecutor(args.workers) as pool:
        records = list(pool.map(_replay_arm, jobs))
    record = {"benchmark": NAME, "table": str(args.table), "table_points": len(table.record["points"]),
              "num_samples": args.num_samples, "concurrency": args.concurrency,
              "oracle": truth, "rung_signals": signals, "arms": records,
              "wall_seconds": time.time() - start, **common.run_info(args, "cpu")}
    return common.finish(args, NAME, record, print_report)


def print_report(record: dict) -> None:
    truth = record["oracle"]
    print("oracle (best mean validation BLEU over seeds; its test BLEU):")
    print(common.format_table(["regime", "lr", "batch", "beams", "val", "test", "sd", "seeds"],
                              [[r, f"{o['lr']:.3g}" if o.get("lr") else None, o.get("batch_size"), o["num_beams"], o["val_mean"], o["test_mean"],
                                o["test_sd"], o["seeds"]] for r, o in truth["regimes"].items()]))
    print("ranking: " + " > ".join(truth["ranking"]))
    for p in truth["pairs"]:
        print(f"  {p['a']} - {p['b']}: {p['difference']:+.2f} ({'separated' if p['separated'] else 'within'} "
              f"2 standard errors of the seeds, {p['two_standard_errors']:.2f})")
    print("\nrung signals (Spearman with the final greedy BLEU on the larger validation subset):")
    for regime, corr in record["rung_signals"].items():
        print(f"  {regime}: " + ", ".join(f"{k} {v:.2f}" for k, v in corr.items() if k != "runs")
              + f" ({corr['runs']} runs)")
    print()
    print(common.format_table(
        ["arm", "replays", "best val", "test", "regret", "epochs", "oracle stopped", "ranking ok", "separated ok",
         "s"],
        [[a["arm"] + (" *" if a["chosen"] else ""), a["replays"], a["best_val_bleu_mean"], a["test_bleu_mean"],
          a["regret_mean"], a["epochs_mean"], a["oracle_best_stopped_share"], a["ranking_match_share"],
          a["separated_pairs_match_share"], a["seconds"]]
         for a in record["arms"]]))


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
