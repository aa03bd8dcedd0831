"""A study directory read into DataFrames, straight from the files a study leaves (no Ray, no torch).

    from study.analyze import load       # or: from study.analysis.load import load
    a = load("results/<study>")          # no Ray cluster, nothing re-run; works on a running study too
    a.trials, a.epochs, a.best, a.comparison, a.record

Everything comes from the study's files: study.json, each regime's best.json, and per trial
params.json, result.json (one line per reported epoch), error.txt, and Tune's newest
experiment_state-*.json for the trial's status. A trial's `status` is one of:

    finished   ran max_epochs (upstream: its one zero-shot evaluation)
    pruned     stopped by ASHA: ended before max_epochs without diverging or erroring
    diverged   reported a non-finite loss and stopped
    errored    raised (after its retries); `error` holds the last line of error.txt
    running    running at the last state snapshot (or when the study was interrupted)
    pending    not started yet

A study at a URI (`--results s3://...` of study.run) is first pulled, trial results but no checkpoints,
into a local staging folder under the cache directory. Writing the tables, plots and report:
`python -m study.analyze` (study/analyze.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.common import read_json_file
from study.config import StudyError
from study.metrics.scoring import bleu_parts
from study.outputs.record import searched_names
from study.outputs.storage import is_uri, pull_study, study_location
from study.tuning import trials as trials_lib
from study.tuning.internals import read_experiment_state
from study.tuning.seeds import SEEDS_EXPERIMENT

STATUSES = ("finished", "pruned", "diverged", "errored", "running", "pending")
METRICS = ["val_loss", "val_ppl", "val_exact_match", "val_bleu", "val_bleu_greedy", "num_beams_best", "val_chrf", "val_bleu_multi", "train_loss", "lr", "epoch_time_s",
           "train_tokens_per_s", "diverged", "trainable_params", "total_params"]
TUNE_FIELDS = ["training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "node_id", "node_ip"]
TEST = ["test_loss", "test_ppl", "test_exact_match", "test_bleu", "test_chrf", "test_bleu_multi"]
# Over the seed runs of each regime's best configuration (best.json; n = 1 without --seeds).
SPREAD = [f"{metric}_{part}" for metric in ("test_bleu", "test_chrf", "test_loss", "test_bleu_multi")
          for part in ("mean", "sd", "n")]
# BLEU's parts, recomputed from each regime's test.hyp.txt / test.ref.txt: they tell output that is short
# (brevity penalty below 1) from output of the right length with the wrong words (low n-gram precisions).
BLEU_PARTS = ["test_bleu_p1", "test_bleu_p2", "test_bleu_p3", "test_bleu_p4", "test_brevity_penalty",
              "test_length_ratio"]


@dataclass
class StudyAnalysis:
    path: Path
    record: dict  # study.json
    trials: pd.DataFrame  # one row per trial
    epochs: pd.DataFrame  # one row per reported epoch of every trial ("lr" there is the scheduled lr)
    best: pd.DataFrame  # one row per finished regime: its best.json (test metrics of its best trial)
    comparison: pd.DataFrame  # one row per regime of the study, finished or not
    searched: dict  # regime -> names of its searched hyperparameters

    @property
    def max_epochs(self) -> int:
        return _max_epochs(self.record)

    def trains(self, regime: str) -> bool:
        """Whether `regime` trains (False: evaluated once, e.g. `upstream`)."""
        return _trains(self.record, regime)

    @property
    def unfinished(self) -> list[str]:
        return list(self.comparison.loc[self.comparison["state"] != "finished", "regime"])


def _trains(record: dict, regime: str) -> bool:
    # Which regimes train is in the record; records older than that field only had `upstream` evaluate-only.
    return bool(record.get("trains", {}).get(regime, regime != "upstream"))


def _max_epochs(record: dict) -> int:
    return int(record.get("budget", {}).get("max_epochs") or record.get("config", {}).get("epochs") or 1)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _result_lines(path: Path) -> list[dict]:
    """result.json's epochs; a line still being written (or cut by a crash) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def _test_bleu_parts(regime_dir: Path) -> dict:
    """BLEU_PARTS of a regime's test translations; empty when its files are missing or disagree in length."""
    try:
        hypotheses, references = ((regime_dir / f"test.{kind}.txt").read_text(encoding="utf-8").split("\n")[:-1]
                                  for kind in ("hyp", "ref"))
    except OSError:
        return {}
    if not references or len(hypotheses) != len(references):
        return {}
    return {f"test_{k}": v for k, v in bleu_parts(hypotheses, references).items()}


def _status(tune_status: str | None, rows: list[dict], has_error: bool, max_epochs: int, trains: bool) -> str:
    """A trial's status: Tune's state while it runs or waits, `study.tuning.trials.ended_as` once it ended."""
    last = rows[-1] if rows else None
    if tune_status == "ERROR":
        return trials_lib.ERRORED
    if last and last.get("diverged"):
        return trials_lib.DIVERGED
    if tune_status == "RUNNING":
        return "running"
    if tune_status in ("PENDING", "PAUSED"):
        return "pending"
    ended = trials_lib.ended_as(last, max_epochs, trains=trains)
    if tune_status == "TERMINATED" or ended == trials_lib.FINISHED:
        return ended
    # No snapshot of this trial yet (Tune writes one every few seconds) and not complete: judge by its files.
    return trials_lib.ERRORED if has_error else "running"


def _error_line(trial_dir: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in (trial_dir / "error.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else "error (empty error.txt)"


def _read_regime(regime: str, regime_dir: Path, max_epochs: int, trains: bool) -> tuple[list[dict], list[dict]]:
    state = read_experiment_state(regime_dir)
    trials, epochs = [], []
    dirs = sorted(d for d in regime_dir.iterdir() if d.is_dir() and trials_lib.trial_id_of(d.name)) \
        if regime_dir.is_dir() else []
    for trial_dir in dirs:
        snap = state.get(trial_dir.name, {})
        rows = list({r.get("epoch"): r for r in _result_lines(trial_dir / "result.json")}.values())  # last wins
        rows.sort(key=lambda r: r.get("epoch", 0))
        params = snap.get("config") or _read_json(trial_dir / "params.json") or (rows[-1].get("config") if rows else {})
        trial_id = snap.get("trial_id") or trials_lib.trial_id_of(trial_dir.name)
        error = _error_line(trial_dir)
        status = _status(snap.get("status"), rows, error is not None, max_epochs, trains)
        frame = pd.DataFrame(rows)
        best = frame.loc[frame["val_bleu"].idxmax()] if "val_bleu" in frame and frame["val_bleu"].notna().any() else None
        last = rows[-1] if rows else {}
        if best is not None and pd.notna(best.get("num_beams_best", math.nan)):
            # every width scored per checkpoint: the trial's num_beams is the one its best epoch decoded best with
            params = {**(params or {}), "num_beams": int(best["num_beams_best"])}
        trials.append({
            "regime": regime, "trial_id": trial_id, "number": trials_lib.trial_number_of(trial_dir.name),
            "status": status, **{k: v for k, v in (params or {}).items()},
            "epochs_run": int(last.get("epoch", 0)) if rows else 0, "reports": len(rows),
            "wall_s": float(last.get("time_total_s", math.nan)) if rows else math.nan,
            "final_val_bleu": last.get("val_bleu", math.nan), "final_val_loss": last.get("val_loss", math.nan),
            "final_val_chrf": last.get("val_chrf", math.nan),
            "best_val_bleu": float(best["val_bleu"]) if best is not None else math.nan,
            "best_val_loss": float(frame["val_loss"].min()) if "val_loss" in frame else math.nan,
            "best_epoch": int(best["epoch"]) if best is not None else None,
            "diverged": bool(last.get("diverged", False)), "num_failures": snap.get("num_failures"),
            "error": error if status == "errored" else None, "node_id": last.get("node_id"),
            "node_ip": last.get("node_ip"), "tune_status": snap.get("status"), "trial_dir": trial_dir.name,
        })
        for r in rows:
            epochs.append({"regime": regime, "trial_id": trial_id, "status": status, "epoch": r.get("epoch"),
                           **{k: r.get(k) for k in METRICS + TUNE_FIELDS}})
    return trials, epochs


TRIAL_HEAD = ["regime", "trial_id", "number", "status"]
TRIAL_TAIL = ["epochs_run", "reports", "wall_s", "final_val_bleu", "final_val_loss", "final_val_chrf", "best_val_bleu",
              "best_val_loss", "best_epoch", "diverged", "num_failures", "error", "node_id", "node_ip", "tune_status",
              "trial_dir"]


INTEGERS = {"batch_size", "num_beams", "best_epoch", "epochs_run", "epoch", "number", "reports", "num_failures",
            "training_iteration", "timestamp", "trials", "trainable_params", "total_params", "test_pairs", *STATUSES}


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole-number columns with gaps (batch_size is absent for upstream) as nullable integers, not floats."""
    for col in INTEGERS & set(frame.columns):
        if frame[col].dtype == bool:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.notna().any() and (values.dropna() % 1 == 0).all():
            frame[col] = values.astype("Int64")
    return frame


def _cost_gpus(budget: dict) -> float:
    """GPUs billed during a search: those the search held (gpus_per_trial x max_concurrent); a CPU-only
    study is billed as one machine, so the rate then reads as the machine's hourly price."""
    gpus = float(budget.get("gpus_per_trial") or 0) * int(budget.get("max_concurrent") or 1)
    return gpus if gpus > 0 else 1.0


def _search_hours(row: dict, record: dict) -> float:
    """Hours of the whole cluster a regime's search is billed for. One regime at a time: its search's wall time
    (idle slots included). Regimes side by side share the cluster, so each is billed its trials' own time over
    the slots, and the regimes' bills add up to the cluster's time (study.json's budget: `regimes_at_once`,
    0 for all; absent in studies from before it, which ran one regime at a time)."""
    budget = record.get("budget", {})
    regimes = len(record.get("regimes", [])) or 1
    at_once = min(budget.get("regimes_at_once", 1) or regimes, regimes)
    if at_once > 1 and not math.isnan(row.get("search_trial_s", math.nan)):
        return row["search_trial_s"] / int(budget.get("max_concurrent") or 1) / 3600
    return (row.get("search_wall_s") or math.nan) / 3600


def _comparison(record: dict, trials: pd.DataFrame, epochs: pd.DataFrame, best: pd.DataFrame,
                gpu_hour_cost: float | None) -> pd.DataFrame:
    hyper = searched_names(record.get("search_spaces", {}))
    regimes = list(dict.fromkeys(list(record.get("regimes", [])) + list(trials.get("regime", []))))
    rows = []
    for regime in regimes:
        t = trials[trials["regime"] == regime] if len(trials) else trials
        e = epochs[epochs["regime"] == regime] if len(epochs) else epochs
        counts = t["status"].value_counts() if len(t) else pd.Series(dtype=int)
        row = {"regime": regime, "state": "finished" if regime in set(best.get("regime", [])) else
               ("unfinished" if len(t) else "not started")}
        if row["state"] == "finished":
            b = best[best["regime"] == regime].iloc[0]
            row |= {k: b.get(k) for k in TEST + SPREAD + BLEU_PARTS + ["best_val_bleu"]  + hyper + ["best_epoch", "epochs_run", "trial_wall_s",
                                                                              "search_wall_s", "trainable_params",
                                                                              "total_params"]}
        elif len(t) and t["best_val_bleu"].notna().any():  # best so far, no test score yet
            b = t.loc[t["best_val_bleu"].idxmax()]
            row |= {k: b.get(k) for k in hyper} | {"best_val_bleu": b["best_val_bleu"], "best_epoch": b["best_epoch"],
                                                   "epochs_run": b["epochs_run"], "trial_wall_s": b["wall_s"]}
            if len(e):
                row["search_wall_s"] = float(e["timestamp"].max() - (e["timestamp"] - e["time_total_s"]).min())
            last = e[e["trial_id"] == b["trial_id"]].iloc[-1] if len(e) else {}
            row |= {k: last.get(k) for k in ("trainable_params", "total_params")}
        row |= {"trials": len(t), **{s: int(counts.get(s, 0)) for s in STATUSES},
                "epoch_s_median": float(e["epoch_time_s"].median()) if len(e) else math.nan}
        if row["state"] == "finished" and not len(t):  # trial folders elsewhere (a storage URI): best.json's counts
            row |= {k: b.get(k) for k in ("trials", "pruned", "errored")}
        row["search_trial_s"] = float(t["wall_s"].sum()) if len(t) else math.nan  # its trials' own time, added up
        if gpu_hour_cost is not None:
            row["gpus_billed"] = _cost_gpus(record.get("budget", {}))
            row["cost_usd"] = _search_hours(row, record) * row["gpus_billed"] * gpu_hour_cost
        rows.append(row)
    columns = ["regime", "state", *TEST, *SPREAD, "best_val_bleu", *hyper, "best_epoch", "epochs_run", "trial_wall_s",
               "search_wall_s", "search_trial_s", "trials", *STATUSES, "epoch_s_median", "trainable_params", "total_params", *BLEU_PARTS]
    columns += ["gpus_billed", "cost_usd"] if gpu_hour_cost is not None else []
    frame = pd.DataFrame(rows).reindex(columns=columns)
    for col in columns[2:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return _tidy(frame)


def load(path: str | os.PathLike, gpu_hour_cost: float | None = None,
         cache_dir: str | os.PathLike | None = None) -> StudyAnalysis:
    """Read a study directory (finished, running or interrupted) into DataFrames; raises StudyError
    when `path` is not a study or holds no trial yet. `path` may be a study's URI (s3://..., file://...):
    it is pulled into a staging folder under `cache_dir` first, and the analysis' `path` is that folder."""
    if is_uri(str(path)):
        where = study_location(str(path), cache_dir)
        return _load(pull_study(where), gpu_hour_cost, uri=where.remote)
    return _load(Path(path).expanduser(), gpu_hour_cost)


def _load(path: Path, gpu_hour_cost: float | None, uri: str | None = None) -> StudyAnalysis:
    """`uri`: where a staged study came from, to name it in errors."""
    if not path.is_dir():
        raise StudyError(f"{path} does not exist or is not a directory; pass a study directory such as results/<study>")
    record = read_json_file(path / "study.json", missing_ok=True)
    if record is None:
        raise StudyError(f"{uri or path} is not a study directory (no readable study.json); "
                         f"pass results/<study>, the folder `python -m study.run` wrote")
    if gpu_hour_cost is not None and not (gpu_hour_cost >= 0 and math.isfinite(gpu_hour_cost)):
        raise StudyError(f"--gpu-hour-cost must be a non-negative number of USD, got {gpu_hour_cost}")
    regimes = list(dict.fromkeys(list(record.get("regimes", [])) +
                                 sorted(d.name for d in path.iterdir() if (d / "tuner.pkl").exists())))
    trials, epochs, best_rows, seed_trials = [], [], [], []
    for regime in regimes:
        t, e = _read_regime(regime, path / regime, _max_epochs(record), _trains(record, regime))
        for more in trials_lib.extension_dirs(path / regime):  # --more-trials: numbered after the earlier trials
            extra, extra_epochs = _read_regime(regime, more, _max_epochs(record), _trains(record, regime))
            last = max((row["number"] or 0 for row in t), default=0)
            t += [row | {"number": (row["number"] or 0) + last, "trial_dir": f"{more.name}/{row['trial_dir']}"}
                  for row in extra]
            e += extra_epochs
        trials += t
        b = read_json_file(path / regime / "best.json", missing_ok=True)
        # a seed re-run stops at the best trial's selected epoch (study.tuning.seeds): that is its full length
        seed_length = int((b or {}).get("best_epoch") or 0) or _max_epochs(record)
        seed_trials += _read_regime(regime, path / regime / SEEDS_EXPERIMENT, seed_length, True)[0]
        epochs += e
        if b is not None:
            best_rows.append({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                              for k, v in b.items() if k != "config"} | {"model": b.get("config", {}).get("model")}
                             | _test_bleu_parts(path / regime))
    if not trials and not best_rows:
        raise StudyError(f"study {path.name} has no trials yet (no trial directory under "
                         f"{', '.join(regimes) or 'any regime'}); run or resume it first")
    trials_df = _tidy(pd.DataFrame(trials))
    epochs_df = _tidy(pd.DataFrame(epochs, columns=["regime", "trial_id", "status", "epoch", *METRICS, *TUNE_FIELDS]))
    best_df = _tidy(pd.DataFrame(best_rows))
    if len(trials_df):
        best_ids = set(zip(best_df.get("regime", []), best_df.get("trial_id", [])))
        trials_df.insert(4, "is_best", [(r, t) in best_ids for r, t in zip(trials_df["regime"], trials_df["trial_id"])])
        hyper = searched_names(record.get("search_spaces", {}))
        params = [c for c in hyper if c in trials_df] + [c for c in trials_df.columns[len(TRIAL_HEAD) + 1:]
                                                          if c not in TRIAL_TAIL and c not in hyper]
        order = {r: i for i, r in enumerate(regimes)}
        trials_df = trials_df[TRIAL_HEAD[:4] + ["is_best"] + params + TRIAL_TAIL].sort_values(
            ["regime", "number"], key=lambda col: col.map(order) if col.name == "regime" else col, kind="stable",
        ).reset_index(drop=True)
    searched = {r: list(record.get("search_spaces", {}).get(r, {}).get("search", {})) for r in regimes}
    comparison = _comparison(record, trials_df, epochs_df, best_df, gpu_hour_cost)  # the search's trials only
    return StudyAnalysis(path, record, _with_seed_runs(trials_df, seed_trials, best_df, regimes), epochs_df,
                         best_df, comparison, searched)


SEED_SCORES = ["seed", "test_bleu", "test_chrf", "test_loss", "test_bleu_multi"]


def _with_seed_runs(trials: pd.DataFrame, seed_trials: list[dict], best: pd.DataFrame,
                    regimes: list[str]) -> pd.DataFrame:
    """The trials table with the runs behind each regime's test spread: `run` is "search" (the search's
    trials) or "seeds" (its best configuration trained again, study.tuning.seeds), and every run scored on
    test (the best trial and each seed re-run) carries its seed and test scores, from best.json's `seeds`."""
    if not len(trials):
        return trials
    scores = {}
    for _, b in best.iterrows():
        for s in json.loads(b["seeds"]) if isinstance(b.get("seeds"), str) else []:
            scores[(b["regime"], s.get("trial_id"))] = s
    frame = trials.assign(run="search")
    if seed_trials:
        seeds = pd.DataFrame(seed_trials).assign(run="seeds", is_best=False)
        frame = pd.concat([frame, seeds.reindex(columns=[c for c in frame.columns if c in seeds or c == "run"]
                                                + [c for c in seeds.columns if c not in frame])], ignore_index=True)
    keys = list(zip(frame["regime"], frame["trial_id"]))
    for col in SEED_SCORES:
        known = frame[col] if col in frame else pd.Series(math.nan, index=frame.index)
        frame[col] = [scores[k].get(col, v) if k in scores else v for k, v in zip(keys, known)]
    order = {r: i for i, r in enumerate(regimes)}
    frame = frame.sort_values(["regime", "run"], key=lambda col: col.map(order) if col.name == "regime" else
                              col.map({"search": 0, "seeds": 1}), kind="stable").reset_index(drop=True)
    return _tidy(frame)
