"""Search designs replayed over the search table: hundreds of studies per design, at no training cost.

    python benchmarks/search_replay.py --replays 200                  # every arm, docs/measurements' table
    python benchmarks/search_replay.py --arms random,tpe+asha --replays 20 --table /tmp/t.json

Reads the table `benchmarks/search_table.py` wrote (every configuration of the quick preset trained per seed,
every epoch scored greedy and with 4 beams) and, with `benchmarks/replay_table.py` (the table, the oracle, the rung
signals), `benchmarks/replay_arms.py` (the designs) and `benchmarks/replay_judge.py` (the targets, the report),

1. **the oracle**: per regime the configuration (lr, batch size) with the best mean validation BLEU over seeds (each
   seed by its best epoch and width, as the study selects), its top three, and whether validation orders each two
   regimes' best or shows them level within ±1 BLEU (Welch's t with its own degrees of freedom);
2. **rung signals**: the Spearman correlation of each candidate rung metric at epochs 1 and 2 with the final BLEU;
3. **the replay**: each arm (a sampler x an early-stopping rule x a start, see `parse_arm`) searches every trained
   regime as the study does — the project's own `AshaAwareOptunaSearch`, sampler settings and `make_scheduler`,
   `num_samples` trials, `--concurrency` (the search's width) at once, in trial order — with trials that read the
   table instead of training: a trial's lr snaps to the grid's nearest in log (a tie to either), its seed is one of
   the recorded seeds drawn per point and replay, each checkpoint scored at both widths unless the arm samples
   beams, and its epochs arrive in the order their recorded durations imply (a simulated clock, as Syne Tune's
   `SimulatorCallback` replays tabulated curves). The event loop calls the searcher and scheduler as Tune's
   controller does (`ray.tune.execution.tune_controller`).

Everything an arm is judged by is validation BLEU: the regret per regime (the oracle's mean validation BLEU minus the
found configuration's), its spread between regimes, the epochs against random search's, how often the oracle's
best configuration was stopped early. Test BLEU is printed beside them and read by nothing that chooses
(`--shuffle-test` moves every test figure between points: the recommendation does not change).
`--out` writes JSON with one record per arm (`chosen: true` on the quick preset's) and the recommended arm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/search_replay.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.replay_arms import arm_names, make_search, parse_arm  # noqa: E402
from benchmarks.replay_judge import judge, print_report, summarize  # noqa: E402
from benchmarks.replay_table import (  # noqa: E402
    WIDTHS,
    Table,
    best_epoch,
    epoch_rows,
    oracle,
    quality,
    rung_signals,
)
from benchmarks.search_table import DEFAULT_OUT as DEFAULT_TABLE  # noqa: E402
from study.config import PRESETS, StudyError  # noqa: E402

NAME = "search_replay"
STARTUP_SECONDS = 2.0  # a trial's start in a reused worker (model build, data from the object store)


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


def replay_regime(table: Table, regime: str, arm_name: str, seed: int, n_trials: int, concurrency: int, space) -> dict:
    """One search of `regime` by the arm over the table; returns its trials and the best one."""
    import random

    from ray.tune.schedulers import TrialScheduler

    arm = parse_arm(arm_name)
    rng = random.Random(f"{seed}|{regime}")
    draws: dict[tuple, int] = {}  # the seed each point gets in this replay
    # in trial order, as the study searches (study.tuning.searcher): `concurrency` trials at once
    searcher, scheduler = make_search(regime, arm, seed, n_trials, table.epochs, space, at_once=concurrency)
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
            lr = table.snap(regime, config["lr"], batch, rng)
            key = (regime, lr, batch)
            if key not in draws:
                draws[key] = rng.choice(table.seeds(*key))
            point = table.points[key][draws[key]]
            widths = (config["num_beams"],) if "num_beams" in config else WIDTHS
            trial = _Trial(trial_id, config, point, epoch_rows(point, widths), experiment_tag=f"{started}_")
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
    lr, batch = best.point["lr"], best.config["batch_size"]
    widths = (best.config["num_beams"],) if "num_beams" in best.config else WIDTHS
    found = quality(table, regime, lr, batch, widths)
    return {"best": {"lr": lr, "batch_size": batch, "num_beams": epoch["num_beams_best"],
                     "val_bleu": epoch["val_bleu"], "epoch": epoch["epoch"],
                     "quality_val": found["val_mean"], "quality_test_printed_only": found["test_mean"]},
            "epochs": sum(t.at for t in ended),
            "trials": [{"lr": t.point["lr"], "batch_size": t.config["batch_size"],
                        "num_beams": t.config.get("num_beams"), "epochs": t.at, "stopped_early": t.stopped_early}
                       for t in ended]}


def replay_study(table: Table, arm: str, seed: int, n_trials: int, concurrency: int, spaces: dict,
                 truth: dict) -> dict:
    """One whole study (every trained regime, and upstream from the table) replayed by `arm`; ranked on validation."""
    regimes = {r: replay_regime(table, r, arm, seed, n_trials, concurrency, spaces[r]) for r in table.regimes}
    vals = {r: v["best"]["quality_val"] for r, v in regimes.items()}
    if "upstream" in truth["regimes"]:
        vals["upstream"] = truth["regimes"]["upstream"]["val_mean"]
    ranking = sorted(vals, key=lambda r: -vals[r])
    oracle_stopped = {}
    for r, v in regimes.items():
        o = truth["regimes"][r]
        oracle_stopped[r] = any(t["stopped_early"] for t in v["trials"]
                                if (t["lr"], t["batch_size"]) == (o["lr"], o["batch_size"]))
    ordered = [(p["a"], p["b"]) for p in truth["pairs"] if p["validation"]["ordered"]]
    return {"seed": seed, "regimes": regimes, "ranking": ranking,
            # the pairs the oracle orders on validation beyond seed noise, each kept in the oracle's order
            "ordered_pairs_match": all(ranking.index(a) < ranking.index(b) for a, b in ordered),
            "oracle_stopped": oracle_stopped}


def _replay_arm(args: tuple) -> dict:
    table_path, arm, seeds, n_trials, concurrency, shuffle_test, space_file = args
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)
    record = json.loads(Path(table_path).read_text(encoding="utf-8"))
    table = Table(shuffled_test(record, shuffle_test) if shuffle_test is not None else record)
    truth = oracle(table)
    spaces = _spaces(table.regimes, space_file)
    start = time.perf_counter()
    studies = [replay_study(table, arm, s, n_trials, concurrency, spaces, truth) for s in seeds]
    return summarize(arm, studies, truth, time.perf_counter() - start)


def shuffled_test(record: dict, seed: int) -> dict:
    """The table with every test figure moved to another point at random: what a design chosen on validation alone
    cannot notice (tests/test_search_design.py)."""
    import copy
    import random

    record = copy.deepcopy(record)
    trained = [p for p in record["points"] if p["regime"] != "upstream"]
    tests = [p["test"] for p in trained]
    random.Random(seed).shuffle(tests)
    for p, t in zip(trained, tests):
        p["test"] = t
    return record


def _spaces(regimes: list[str], space_file: str | None = None) -> dict:
    """Each regime's search space: the bundled search_spaces/<regime>.yaml, or one file for every regime."""
    from study.tuning.space import default_search_space_path, load_search_space

    return {r: load_search_space(space_file or default_search_space_path(r)) for r in regimes}


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
    p.add_argument("--concurrency", type=int, default=2, help="trials at once (default 2, the search's width)")
    p.add_argument("--workers", type=int, default=2, help="processes replaying arms at once (default 2)")
    p.add_argument("--shuffle-test", type=int, metavar="SEED",
                   help="shuffle the table's test figures between points first (a check: nothing chosen may move)")
    p.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/out/search_replay.json)")
    return p


def replay(table_path: Path, arms: list[str], replays: int, gp_replays: int, num_samples: int, concurrency: int,
           workers: int, shuffle_test: int | None = None, space_file: Path | None = None) -> dict:
    """Every arm replayed; the record the CLI writes (oracle, rung signals, arms, the recommendation).
    `space_file`: one search space for every regime instead of the bundled ones (a table of other batch sizes)."""
    record = json.loads(table_path.read_text(encoding="utf-8"))
    table = Table(shuffled_test(record, shuffle_test) if shuffle_test is not None else record)
    if not table.regimes:
        raise StudyError(f"{table_path} has no trained points; let search_table.py run longer")
    jobs = [(str(table_path), arm, list(range(gp_replays if arm.startswith("gp") else replays)), num_samples,
             concurrency, shuffle_test, str(space_file) if space_file else None) for arm in arms]
    jobs.sort(key=lambda job: -len(job[2]) * (50 if job[1].startswith("gp") else 1))  # the slow arms first
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            records = list(pool.map(_replay_arm, jobs))
    else:
        records = [_replay_arm(job) for job in jobs]
    records.sort(key=lambda a: arms.index(a["arm"]))
    return {"table": str(table_path), "table_points": len(table.record["points"]), "num_samples": num_samples,
            "concurrency": concurrency, "shuffled_test": shuffle_test, "oracle": oracle(table),
            "rung_signals": rung_signals(table), "arms": records, **judge(records)}


def run(args: argparse.Namespace) -> int:
    if not args.table.is_file():
        raise StudyError(f"no search table at {args.table}; make one with `python benchmarks/search_table.py`")
    for flag in ("replays", "gp_replays", "num_samples", "concurrency", "workers"):
        common.positive(flag.replace("_", "-"), getattr(args, flag))
    arms = [a for a in args.arms.split(",") if a]
    for arm in arms:
        parse_arm(arm)
    start = time.time()
    record = replay(args.table, arms, args.replays, args.gp_replays, args.num_samples, args.concurrency, args.workers,
                    args.shuffle_test)
    record = {"benchmark": NAME, **record, "wall_seconds": time.time() - start, **common.run_info(args, "cpu")}
    return common.finish(args, NAME, record, print_report)


def main(argv: list[str] | None = None) -> int:
    return common.cli(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
