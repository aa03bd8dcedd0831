"""Analysis of a study directory: tables, plots and a report, read straight from the files a study leaves.

    python -m study.analyze results/<study> [--gpu-hour-cost USD] [--no-plots]

    from study.analyze import load
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

Writes into the study directory: comparison.csv / .md / .parquet, plots/*.png and report.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.config import StudyError
from study.results import write_text

# The original notebook experiment this project generalises (t5-small, Kaggle "English-French" CSV,
# 3x RTX 6000 Ada rented in the cloud, 8.07 USD in all): its test split, last epoch of 10. Source: the
# notebook's own printed results, as recorded in the project's ORIGINAL.md (shared material).
ORIGINAL_NOTEBOOK = {
    "model": "t5-small", "hardware": "3x RTX 6000 Ada (cloud)", "cost_usd": 8.07, "split": "test, last epoch",
    "regimes": {  # test BLEU, seconds per epoch (train + test evaluation), what the row measured
        "upstream": {"bleu": 1.15, "epoch_s": 437, "note": "no task prefix; evaluation only"},
        "scratch": {"bleu": 0.15, "epoch_s": 825, "note": "one untuned lr (1e-3)"},
        "decoder": {"bleu": 50.86, "epoch_s": 456, "note": "encoder frozen"},
        "full": {"bleu": 53.88, "epoch_s": 520, "note": "all trained"},
    },
    "caveats": [
        "its loss and perplexity counted padding positions (labels padded with 0, not -100);",
        "upstream ran without the `translate English to French: ` prefix, so its BLEU measures a missing prompt;",
        "scratch had a single untuned learning rate (1e-3): its BLEU says that rate failed, not that scratch fails;",
        "there was no validation split: curves and choices were made on the test set, and the same English "
        "sentence often sat in both train and test, inflating test BLEU.",
    ],
}

STATUSES = ("finished", "pruned", "diverged", "errored", "running", "pending")
METRICS = ["val_loss", "val_ppl", "val_exact_match", "val_bleu", "val_chrf", "train_loss", "lr", "epoch_time_s",
           "train_tokens_per_s", "diverged", "trainable_params", "total_params"]
TUNE_FIELDS = ["training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "node_id", "node_ip"]
TEST = ["test_loss", "test_ppl", "test_exact_match", "test_bleu", "test_chrf"]
HYPER = ["lr", "batch_size", "num_beams"]


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

    @property
    def unfinished(self) -> list[str]:
        return list(self.comparison.loc[self.comparison["state"] != "finished", "regime"])


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


def _tune_state(regime_dir: Path) -> dict[str, dict]:
    """Trial dir name -> {status, trial_id, config, num_failures} from Tune's newest state snapshot."""
    snapshots = sorted(regime_dir.glob("experiment_state-*.json"))
    state = _read_json(snapshots[-1]) if snapshots else None
    out: dict[str, dict] = {}
    for entry in (state or {}).get("trial_data", []):
        try:
            trial, meta = json.loads(entry[0]), json.loads(entry[1])
        except (ValueError, TypeError, IndexError):
            continue
        out[trial.get("relative_logdir", "")] = {"status": trial.get("status"), "trial_id": trial.get("trial_id"),
                                                 "config": trial.get("config") or {},
                                                 "num_failures": meta.get("num_failures", 0)}
    return out


def _status(tune_status: str | None, rows: list[dict], has_error: bool, max_epochs: int, trains: bool) -> str:
    last_epoch = rows[-1].get("epoch", 0) if rows else None
    complete = bool(rows) and (not trains or last_epoch >= max_epochs)
    if tune_status == "ERROR":
        return "errored"
    if rows and rows[-1].get("diverged"):
        return "diverged"
    if tune_status == "RUNNING":
        return "running"
    if tune_status in ("PENDING", "PAUSED"):
        return "pending"
    if tune_status == "TERMINATED":
        return "finished" if complete else ("pruned" if rows else "errored")
    # No snapshot of this trial yet (Tune writes one every few seconds): judge by its files.
    if has_error and not complete:
        return "errored"
    return "finished" if complete else "running"


def _error_line(trial_dir: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in (trial_dir / "error.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else "error (empty error.txt)"


def _read_regime(regime: str, regime_dir: Path, max_epochs: int) -> tuple[list[dict], list[dict]]:
    trains = regime != "upstream"
    state = _tune_state(regime_dir)
    trials, epochs = [], []
    dirs = sorted(d for d in regime_dir.iterdir() if d.is_dir() and d.name.startswith("train_")) \
        if regime_dir.is_dir() else []
    for trial_dir in dirs:
        snap = state.get(trial_dir.name, {})
        rows = list({r.get("epoch"): r for r in _result_lines(trial_dir / "result.json")}.values())  # last wins
        rows.sort(key=lambda r: r.get("epoch", 0))
        params = snap.get("config") or _read_json(trial_dir / "params.json") or (rows[-1].get("config") if rows else {})
        trial_id = snap.get("trial_id") or (rows[-1].get("trial_id") if rows else trial_dir.name.split("_")[2])
        error = _error_line(trial_dir)
        tag = trial_dir.name.split("_")[3] if len(trial_dir.name.split("_")) > 3 else ""
        status = _status(snap.get("status"), rows, error is not None, max_epochs, trains)
        frame = pd.DataFrame(rows)
        best = frame.loc[frame["val_bleu"].idxmax()] if "val_bleu" in frame and frame["val_bleu"].notna().any() else None
        last = rows[-1] if rows else {}
        trials.append({
            "regime": regime, "trial_id": trial_id, "number": int(tag) if tag.isdigit() else None,
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


def _comparison(record: dict, trials: pd.DataFrame, epochs: pd.DataFrame, best: pd.DataFrame,
                gpu_hour_cost: float | None) -> pd.DataFrame:
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
            row |= {k: b.get(k) for k in TEST + ["best_val_bleu"] + HYPER + ["best_epoch", "epochs_run", "trial_wall_s",
                                                                              "search_wall_s", "trainable_params",
                                                                              "total_params"]}
        elif len(t) and t["best_val_bleu"].notna().any():  # best so far, no test score yet
            b = t.loc[t["best_val_bleu"].idxmax()]
            row |= {k: b.get(k) for k in HYPER} | {"best_val_bleu": b["best_val_bleu"], "best_epoch": b["best_epoch"],
                                                   "epochs_run": b["epochs_run"], "trial_wall_s": b["wall_s"]}
            if len(e):
                row["search_wall_s"] = float(e["timestamp"].max() - (e["timestamp"] - e["time_total_s"]).min())
            last = e[e["trial_id"] == b["trial_id"]].iloc[-1] if len(e) else {}
            row |= {k: last.get(k) for k in ("trainable_params", "total_params")}
        row |= {"trials": len(t), **{s: int(counts.get(s, 0)) for s in STATUSES},
                "epoch_s_median": float(e["epoch_time_s"].median()) if len(e) else math.nan}
        if row["state"] == "finished" and not len(t):  # trial folders elsewhere (a storage URI): best.json's counts
            row |= {k: b.get(k) for k in ("trials", "pruned", "errored")}
        if gpu_hour_cost is not None:
            row["gpus_billed"] = _cost_gpus(record.get("budget", {}))
            row["cost_usd"] = (row.get("search_wall_s") or math.nan) / 3600 * row["gpus_billed"] * gpu_hour_cost
        rows.append(row)
    columns = ["regime", "state", *TEST, "best_val_bleu", *HYPER, "best_epoch", "epochs_run", "trial_wall_s",
               "search_wall_s", "trials", *STATUSES, "epoch_s_median", "trainable_params", "total_params"]
    columns += ["gpus_billed", "cost_usd"] if gpu_hour_cost is not None else []
    frame = pd.DataFrame(rows).reindex(columns=columns)
    for col in columns[2:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return _tidy(frame)


def load(path: str | os.PathLike, gpu_hour_cost: float | None = None) -> StudyAnalysis:
    """Read a study directory (finished, running or interrupted) into DataFrames; raises StudyError
    when `path` is not a study or holds no trial yet."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise StudyError(f"{path} does not exist or is not a directory; pass a study directory such as results/<study>")
    record = _read_json(path / "study.json")
    if record is None:
        raise StudyError(f"{path} is not a study directory (no readable study.json); "
                         f"pass results/<study>, the folder `python -m study.run` wrote")
    if gpu_hour_cost is not None and not (gpu_hour_cost >= 0 and math.isfinite(gpu_hour_cost)):
        raise StudyError(f"--gpu-hour-cost must be a non-negative number of USD, got {gpu_hour_cost}")
    regimes = list(dict.fromkeys(list(record.get("regimes", [])) +
                                 sorted(d.name for d in path.iterdir() if (d / "tuner.pkl").exists())))
    trials, epochs, best_rows = [], [], []
    for regime in regimes:
        t, e = _read_regime(regime, path / regime, _max_epochs(record))
        trials += t
        epochs += e
        b = _read_json(path / regime / "best.json")
        if b is not None:
            best_rows.append({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                              for k, v in b.items() if k != "config"} | {"model": b.get("config", {}).get("model")})
    if not trials and not best_rows:
        raise StudyError(f"study {path.name} has no trials yet (no trial directory under "
                         f"{', '.join(regimes) or 'any regime'}); run or resume it first")
    trials_df = _tidy(pd.DataFrame(trials))
    epochs_df = _tidy(pd.DataFrame(epochs, columns=["regime", "trial_id", "status", "epoch", *METRICS, *TUNE_FIELDS]))
    best_df = _tidy(pd.DataFrame(best_rows))
    if len(trials_df):
        best_ids = set(zip(best_df.get("regime", []), best_df.get("trial_id", [])))
        trials_df.insert(4, "is_best", [(r, t) in best_ids for r, t in zip(trials_df["regime"], trials_df["trial_id"])])
        params = [c for c in HYPER if c in trials_df] + [c for c in trials_df.columns[len(TRIAL_HEAD) + 1:]
                                                          if c not in TRIAL_TAIL and c not in HYPER]
        order = {r: i for i, r in enumerate(regimes)}
        trials_df = trials_df[TRIAL_HEAD[:4] + ["is_best"] + params + TRIAL_TAIL].sort_values(
            ["regime", "number"], key=lambda col: col.map(order) if col.name == "regime" else col, kind="stable",
        ).reset_index(drop=True)
    searched = {r: list(record.get("search_spaces", {}).get(r, {}).get("search", {})) for r in regimes}
    return StudyAnalysis(path, record, trials_df, epochs_df, best_df,
                         _comparison(record, trials_df, epochs_df, best_df, gpu_hour_cost), searched)


# --- the report -----------------------------------------------------------------------------------------

def _dur(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    s = float(seconds)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def _fmt(value, fmt: str) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if fmt == "usd":  # cents, or three significant digits for the tiny bills of small studies
        return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
    return _dur(value) if fmt == "dur" else f"`{value}`" if fmt == "code" else format(value, fmt)


MD_COLUMNS = [("regime", "regime", "code"), ("state", "state", "s"), ("test BLEU", "test_bleu", ".2f"),
              ("test chrF", "test_chrf", ".2f"), ("test loss", "test_loss", ".3f"), ("test ppl", "test_ppl", ".2f"),
              ("exact match", "test_exact_match", ".3f"), ("best val BLEU", "best_val_bleu", ".2f"),
              ("lr", "lr", ".2e"), ("batch", "batch_size", ".0f"), ("beams", "num_beams", ".0f"),
              ("epochs to best", "best_epoch", ".0f"), ("best trial wall", "trial_wall_s", "dur"),
              ("search wall", "search_wall_s", "dur"), ("trials", "trials", ".0f"), ("pruned", "pruned", ".0f"),
              ("errored", "errored", ".0f"), ("trainable params", "trainable_params", ",.0f")]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def comparison_markdown(a: StudyAnalysis) -> str:
    cols = MD_COLUMNS + ([("cost (USD)", "cost_usd", "usd")] if "cost_usd" in a.comparison else [])
    rows = [[_fmt(row[c], f) for _, c, f in cols] for _, row in a.comparison.iterrows()]
    return markdown_table([h for h, _, _ in cols], rows)


def findings(a: StudyAnalysis) -> list[str]:
    """Sentences read off the comparison table, claiming nothing it does not show."""
    c = a.comparison.set_index("regime")
    done = c[(c["state"] == "finished") & c["test_bleu"].notna()].sort_values("test_bleu", ascending=False)
    bleu = done["test_bleu"]
    out = []
    if done.empty:
        out.append("No regime has finished yet, so there is no test score to compare.")
    elif len(done) == 1:
        out.append(f"Only `{done.index[0]}` has a test score so far ({bleu.iloc[0]:.2f} BLEU): nothing to compare it with.")
    else:
        w, n = done.index[0], done.index[1]
        gap = bleu[w] - bleu[n]
        s = f"`{w}` won on test BLEU with {bleu[w]:.2f}, {gap:.2f} ahead of `{n}` ({bleu[n]:.2f})"
        s += (": a gap under 1 BLEU is within the noise of a single test set, so treat the two as tied." if gap < 1
              else ".")
        s += (f" Its search took {_dur(c.loc[w, 'search_wall_s'])} ({c.loc[w, 'trials']:.0f} trials), its best trial "
              f"{_dur(c.loc[w, 'trial_wall_s'])}; `{n}`'s search took {_dur(c.loc[n, 'search_wall_s'])} and its best "
              f"trial {_dur(c.loc[n, 'trial_wall_s'])}.")
        if "cost_usd" in c:
            s += f" At the given rate: {_fmt(c.loc[w, 'cost_usd'], 'usd')} USD against {_fmt(c.loc[n, 'cost_usd'], 'usd')} USD."
        out.append(s)
    pretrained = [r for r in ("full", "decoder") if r in done.index]
    if "scratch" in done.index:
        for r in pretrained:
            d = bleu[r] - bleu["scratch"]
            verdict = ("pre-training helped here" if d >= 1 else "within 1 BLEU, so this test set cannot tell them apart"
                       if d > -1 else "`scratch` did better: pre-training did not help on this run")
            out.append(f"Pre-training: `{r}` scored {bleu[r]:.2f} test BLEU against {bleu['scratch']:.2f} for `scratch` "
                       f"(random init), {d:+.2f}: {verdict}.")
    elif pretrained:
        out.append("Whether pre-training helped needs a finished `scratch` regime to compare with.")
    if len(pretrained) == 2:
        d = bleu["decoder"] - bleu["full"]
        out.append(f"Training only the decoder (`decoder`, {c.loc['decoder', 'trainable_params']:,.0f} trainable "
                   f"parameters) against everything (`full`, {c.loc['full', 'trainable_params']:,.0f}): "
                   f"{bleu['decoder']:.2f} vs {bleu['full']:.2f} test BLEU ({d:+.2f}"
                   f"{', within noise' if abs(d) < 1 else ''}), {_dur(c.loc['decoder', 'epoch_s_median'])} vs "
                   f"{_dur(c.loc['full', 'epoch_s_median'])} per epoch (median).")
    if "upstream" in done.index:
        s = f"`upstream` (pretrained, never trained on the task) scored {bleu['upstream']:.2f} test BLEU zero-shot."
        if a.record.get("config", {}).get("model") == "tiny":
            s += (" This tiny upstream was pretrained by this project with T5's span-corruption objective on "
                  "monolingual English and French text only; it never saw a translation, so a near-zero zero-shot "
                  "BLEU is expected.")
        out.append(s)
    for r in a.unfinished:
        row = c.loc[r]
        out.append(f"`{r}` has not started." if row["state"] == "not started" else
                   f"`{r}` is unfinished (no best.json) and has no result: all {row['trials']:.0f} trial(s) errored."
                   if row["errored"] == row["trials"] else
                   f"`{r}` is unfinished (no best.json yet): {row['trials']:.0f} trial(s) so far, "
                   f"{row['running'] + row['pending']:.0f} running or pending, {row['errored']:.0f} errored; its row "
                   f"shows the best validation score and search time so far, and no test score.")
    t = a.trials
    errored = t[t["status"] == "errored"] if len(t) else t
    if len(errored):
        by = ", ".join(f"{n} in `{r}`" for r, n in errored["regime"].value_counts().items())
        out.append(f"{len(errored)} trial(s) errored ({by}); first error: `{errored['error'].iloc[0]}` "
                   f"(full traceback in the trial directory's error.txt).")
    if len(t) and (t["status"] == "diverged").any():
        out.append(f"{int((t['status'] == 'diverged').sum())} trial(s) diverged (non-finite loss) and stopped.")
    return out


PLOT_CAPTIONS = {
    "learning_curves.png": "Validation loss and BLEU by epoch, and BLEU against the trial's wall time: each "
                           "regime's best trial bold, every other trial faint (x: stopped by ASHA).",
    "hyperparameters.png": "Each trial's best validation BLEU against each searched hyperparameter.",
    "epoch_time.png": "Wall time per epoch (training + validation) by regime, every epoch of every trial.",
}


def _original_section(a: StudyAnalysis) -> list[str]:
    o, c = ORIGINAL_NOTEBOOK, a.comparison.set_index("regime")
    rows = [[f"`{r}`", f"{v['bleu']:.2f}", f"~{v['epoch_s']} s", v["note"],
             _fmt(c["test_bleu"].get(r), ".2f"), _dur(c["epoch_s_median"].get(r))] for r, v in o["regimes"].items()]
    cfg = a.record.get("config", {})
    if cfg.get("model") == "t5-small":
        same = (f"This study runs t5-small too, but on `{cfg.get('data')}`, with a validation split grouped by "
                "source sentence, the task prefix and a loss over real tokens only: same model, different corpus "
                "and protocol, so compare the ordering of the regimes more than the absolute figures.")
    else:
        same = (f"This study's numbers come from a different model (`{cfg.get('model')}`) and corpus "
                f"(`{cfg.get('data')}`) on other hardware: compare the ordering of the regimes, not the figures.")
    return ["## Compared with the original notebook", "",
            f"The original notebook experiment ({o['model']}, {o['hardware']}, {o['cost_usd']:.2f} USD in all; "
            f"{o['split']}) against this study:", "",
            markdown_table(["regime", "original test BLEU", "original time/epoch", "original set-up",
                            "this study test BLEU", "this study time/epoch (median)"], rows), "", same, "",
            "The original figures have caveats:", "", *[f"- {x}" for x in o["caveats"]], ""]


def render_report(a: StudyAnalysis, images: list[Path]) -> str:
    r, cfg, budget = a.record, a.record.get("config", {}), a.record.get("budget", {})
    done = [x for x in a.comparison["regime"] if x not in a.unfinished]
    lines = [f"# Study `{r.get('name', a.path.name)}`: T5 English→French over {len(a.comparison)} regime(s)", "",
             f"Model `{cfg.get('model')}`, data `{cfg.get('data')}`, preset `{r.get('preset')}`, seed {r.get('seed')}; "
             f"started {r.get('started_utc')} on `{r.get('host')}`, git commit `{r.get('git_commit')}`.", "",
             f"Finished: {', '.join(f'`{x}`' for x in done) or 'none'}."
             + (f" **Unfinished: {', '.join(f'`{x}`' for x in a.unfinished)}.**" if a.unfinished else ""), "",
             "## Results", "",
             "Each regime's best trial is the one with the highest validation BLEU at any epoch; only that trial is "
             "scored on the test split. lr, batch and beams are its hyperparameters; search wall is the regime's "
             "whole search.", "", comparison_markdown(a), ""]
    if "cost_usd" in a.comparison:
        held = float(budget.get("gpus_per_trial") or 0) * int(budget.get("max_concurrent") or 1)
        lines += [("Cost = each regime's search wall hours × the given hourly rate × " +
                   (f"{held:g} GPU(s) held (gpus_per_trial {budget.get('gpus_per_trial')} × max_concurrent "
                    f"{budget.get('max_concurrent')})" if held > 0 else
                    "1: this study used no GPU, so the rate is read as one machine's hourly price") +
                   f". It leaves out data preparation, pretraining and test scoring. Total: "
                   f"{_fmt(a.comparison['cost_usd'].sum(), 'usd')} USD."), ""]
    lines += ["## What the numbers say", "", *[f"- {s}" for s in findings(a)], ""]
    if images:
        lines += ["## Plots", ""]
        for p in images:
            lines += [f"{PLOT_CAPTIONS.get(p.name, p.stem)}", "", f"![{p.stem}](plots/{p.name})", ""]
    lines += _original_section(a)
    lines += ["## Set-up", "",
              f"Budget: {budget.get('num_samples')} trials per trained regime (upstream: one per beam choice), at most "
              f"{budget.get('max_epochs')} epochs, {budget.get('max_concurrent')} at once, "
              f"{budget.get('cpus_per_trial')} CPU and {budget.get('gpus_per_trial')} GPU per trial, "
              f"max_failures {budget.get('max_failures')}; ASHA on validation BLEU per epoch.", ""]
    for regime, space in r.get("search_spaces", {}).items():
        lines.append(f"- `{regime}` searches {json.dumps(space.get('search'))}; fixed {json.dumps(space.get('fixed'))}"
                     f"; asha {json.dumps(space.get('asha'))}")
    lines += ["", f"BLEU: `{r.get('bleu_signature')}`; chrF: `{r.get('chrf_signature')}`.", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()) + ".", "",
              "Config:", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    return "\n".join(lines)


# --- writing ----------------------------------------------------------------------------------------------

def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_outputs(analysis: StudyAnalysis, plots: bool = True) -> list[Path]:
    """comparison.csv/.md/.parquet, plots/*.png (unless plots=False) and report.md; returns the paths."""
    out = analysis.path
    written = [out / "comparison.csv", out / "comparison.md", out / "comparison.parquet"]
    write_text(written[0], analysis.comparison.to_csv(index=False))
    write_text(written[1], comparison_markdown(analysis) + "\n")
    _atomic(written[2], lambda tmp: analysis.comparison.to_parquet(tmp, index=False))
    images: list[Path] = []
    if plots:
        from study.plots import make_plots

        images = make_plots(analysis, out / "plots", _atomic)
    write_text(out / "report.md", render_report(analysis, images))
    return written + images + [out / "report.md"]


SHOWN = ["regime", "state", "test_bleu", "test_chrf", "test_loss", "best_val_bleu", "lr", "batch_size", "num_beams",
         "best_epoch", "search_wall_s", "trials", "pruned", "errored"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", type=Path, help="a study directory written by python -m study.run")
    parser.add_argument("--gpu-hour-cost", type=float, metavar="USD",
                        help="price of one GPU-hour: adds cost_usd = search wall hours x GPUs held x USD "
                             "(GPUs held = gpus_per_trial x max_concurrent; a CPU-only study counts as one machine)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    try:
        analysis = load(args.study_dir, gpu_hour_cost=args.gpu_hour_cost)
        written = write_outputs(analysis, plots=not args.no_plots)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the analysis into {args.study_dir}: {err}", file=sys.stderr)
        return 2
    shown = analysis.comparison[[c for c in SHOWN + ["cost_usd"] if c in analysis.comparison]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if analysis.unfinished:
        print(f"unfinished regimes (no best.json yet): {', '.join(analysis.unfinished)}")
    print(f"{len(written)} files written; report: {analysis.path / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
