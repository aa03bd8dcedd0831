"""The data sweep's analysis: each regime's test BLEU against the number of training pairs, and where, if
anywhere, the `full` − `scratch` gap closes (study/sweep.py runs the studies; `python -m study.analyze
--data-sweep A B C` rebuilds this from their folders).

    from study.analysis.data_sweep import table, closing
    frame = table([Point("q-pairs500", 500, best, pairs), ...])   # data_sweep.csv
    closing(frame)                                                 # the sentence of data_sweep.md

Per size, each finished regime's test BLEU is best.json's mean ± sd over its scored runs (the search's winner
and its seed re-runs; n of them), as in the study's own report. The `full` − `scratch` row is the study's own
within-study test (`study.analysis.conclusions.pairwise`: the fresh seed runs, test sources clustered, Holm over
the study's pairs, `verdicts.decide`), read with its sign turned to full − scratch: the same figures as that
study's pairwise.csv. The gap "closes" at the size from which on it is no longer a finding (its 95 % interval
includes 0, or too few seeds): a gap the seeds cannot resolve, which is not the same as no gap. No Ray, no
torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.analysis.verdicts import FINDING
from study.common import format_duration
from study.config import StudyError

HIGH, LOW = "full", "scratch"  # the gap the sweep follows: what pre-training buys over the same model from scratch
GAP = f"{HIGH} - {LOW}"
COLUMNS = ["train_pairs", "regime", "test_bleu_mean", "test_bleu_sd", "n_seeds", "difference", "ci_low", "ci_high",
           "p", "p_adjusted", "n_fresh_full", "n_fresh_scratch", "detectable", "verdict", "reason", "study"]
FILE, REPORT, PLOT = "data_sweep.csv", "data_sweep.md", "data_sweep.png"


@dataclass
class Point:
    """One size of the sweep: a study's label, its training pairs, its best.json rows and its pairwise table."""

    study: str
    train_pairs: int
    best: pd.DataFrame  # one row per finished regime: regime, test_bleu_mean, test_bleu_sd, test_bleu_n (or test_bleu)
    pairs: pd.DataFrame  # `conclusions.pairwise` of the study: a − b, a the higher regime


def train_pairs(record: dict, label: str) -> int:
    """A study's training pairs: its sweep's size (study.json's `series`), else its --max-train-pairs."""
    n = record.get("series", {}).get("train_pairs") or record.get("config", {}).get("max_train_pairs")
    if not n:
        raise StudyError(f"study {label} has no --max-train-pairs: the data sweep needs each study's training pairs "
                         f"capped (python -m study.run --max-train-pairs 500,2000,8000 runs one)")
    return int(n)


def _number(value) -> float:
    return float(value) if value is not None and pd.notna(value) else math.nan


def _gap(point: Point) -> dict:
    """The study's full-vs-scratch row of its pairwise table, as full − scratch; {} when it has none."""
    p = point.pairs
    hit = p[((p["a"] == HIGH) & (p["b"] == LOW)) | ((p["a"] == LOW) & (p["b"] == HIGH))] if len(p) else p
    if not len(hit):
        return {}
    r = hit.iloc[0]
    sign = 1.0 if r["a"] == HIGH else -1.0
    low, high = sign * _number(r["ci_low"]), sign * _number(r["ci_high"])
    side = {HIGH: "a", LOW: "b"} if sign > 0 else {HIGH: "b", LOW: "a"}
    return {"difference": sign * _number(r["difference"]) + 0.0, "ci_low": min(low, high), "ci_high": max(low, high),
            "p": _number(r["p"]), "p_adjusted": _number(r["p_adjusted"]),
            "n_fresh_full": r[f"n_seeds_{side[HIGH]}"], "n_fresh_scratch": r[f"n_seeds_{side[LOW]}"],
            "detectable": _number(r.get("detectable")), "verdict": r["verdict"], "reason": r.get("reason", "")}


def table(points: Sequence[Point]) -> pd.DataFrame:
    """data_sweep.csv: per size (smallest first) a row per finished regime (test BLEU mean, sd, n runs), then
    the `full - scratch` row (difference, 95 % interval, p, Holm's p, verdict) where the study finished both.
    StudyError when two studies have the same size or fewer than two sizes are given."""
    sizes = [p.train_pairs for p in points]
    if len(set(sizes)) < len(sizes):
        twice = sorted({n for n in sizes if sizes.count(n) > 1})
        raise StudyError(f"the data sweep has two studies at {', '.join(map(str, twice))} training pairs; "
                         f"pass one study per size")
    if len(points) < 2:
        raise StudyError("a data sweep needs studies at two sizes at least")
    rows = []
    for point in sorted(points, key=lambda p: p.train_pairs):
        for _, b in point.best.iterrows():
            mean = b.get("test_bleu_mean")
            single = mean is None or pd.isna(mean)  # a study recorded before --seeds: one run
            rows.append({"train_pairs": point.train_pairs, "regime": b["regime"], "study": point.study,
                         "test_bleu_mean": _number(b.get("test_bleu") if single else mean),
                         "test_bleu_sd": math.nan if single else _number(b.get("test_bleu_sd")),
                         "n_seeds": 1 if single else int(_number(b.get("test_bleu_n")) or 1)})
        gap = _gap(point)
        if gap:
            rows.append({"train_pairs": point.train_pairs, "regime": GAP, "study": point.study, **gap})
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return frame.astype({c: "Int64" for c in ("n_seeds", "n_fresh_full", "n_fresh_scratch")})


def _gaps(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["regime"] == GAP].sort_values("train_pairs")


def _interval(r, named: str = "") -> str:
    return ("no interval: too few fresh seed runs" if pd.isna(r["ci_low"]) else
            f"{named}{r['ci_low']:+.2f} to {r['ci_high']:+.2f}")


def _at(r) -> str:
    return f"{int(r['train_pairs']):,} pairs, {r['difference'] + 0.0:+.2f} BLEU ({_interval(r, '95 % interval ')})"


def closing(frame: pd.DataFrame) -> str:
    """Where, if anywhere, the full − scratch gap closes across the sweep's sizes, in one sentence."""
    gaps = _gaps(frame)
    if not len(gaps):
        return (f"No size finished both `{HIGH}` and `{LOW}` with seed runs to compare: there is no gap to follow "
                f"(run the sweep with --regime {LOW},{HIGH} or all).")
    ahead = [(r["verdict"] == FINDING and r["difference"] > 0) for _, r in gaps.iterrows()]
    rows = [r for _, r in gaps.iterrows()]
    behind = [r for r in rows if r["verdict"] == FINDING and r["difference"] < 0]
    tail = (f" `{LOW}` is ahead, a finding, at " + "; ".join(_at(r) for r in behind) + ".") if behind else ""
    caveat = (" Not a finding means these seeds cannot tell the two apart at that size (see `detectable`), not "
              "that pre-training buys nothing there.")
    if all(ahead):
        return (f"`{HIGH}` − `{LOW}` is a finding at every size, from {_at(rows[0])} to {_at(rows[-1])}: the gap "
                f"does not close within {int(rows[0]['train_pairs']):,}–{int(rows[-1]['train_pairs']):,} training "
                "pairs at this budget.")
    if not any(ahead):
        return (f"`{HIGH}` − `{LOW}` is not a finding at any size: {'; '.join(_at(r) for r in rows)}. There is no "
                f"gap to close at this budget.{tail}{caveat}")
    last = max(i for i, a in enumerate(ahead) if a)
    if last == len(rows) - 1:  # a finding at the largest size, not at some smaller one
        gone = [r for r, a in zip(rows, ahead) if not a]
        return (f"`{HIGH}` − `{LOW}` is a finding at the largest size, {_at(rows[-1])}, but not at "
                f"{'; '.join(_at(r) for r in gone)}: the gap does not close as the data grows.{tail}{caveat}")
    earlier_gap = [r for r, a in zip(rows[:last], ahead[:last]) if not a]
    note = (f" (it was already not a finding at {', '.join(f'{int(r.train_pairs):,}' for r in earlier_gap)} "
            "pairs)") if earlier_gap else ""
    return (f"The gap closes between {int(rows[last]['train_pairs']):,} and {int(rows[last + 1]['train_pairs']):,} "
            f"training pairs: `{HIGH}` − `{LOW}` is a finding at {_at(rows[last])} and not from "
            f"{_at(rows[last + 1])} on{note}.{tail}{caveat}")


def plot(frame: pd.DataFrame, path: Path, save) -> bool:
    """plots/data_sweep.png: each regime's test BLEU (mean ± sd over its runs) against training pairs on a log
    axis; beside it full − scratch with its 95 % interval (filled: a finding)."""
    from study.analysis.plots import _figure, colour

    scores = frame[frame["regime"] != GAP]
    if scores.empty:
        return False
    gaps = _gaps(frame)
    fig, axes = _figure(12.0 if len(gaps) else 6.5, 4.6, 2 if len(gaps) else 1)
    regimes = list(dict.fromkeys(scores["regime"]))
    ax = axes[0]
    for regime in regimes:
        own = scores[scores["regime"] == regime].sort_values("train_pairs")
        ax.errorbar(own["train_pairs"], own["test_bleu_mean"], yerr=own["test_bleu_sd"].fillna(0), label=regime,
                    color=colour(regime, regimes), marker="o", capsize=4, linewidth=1.8)
    ax.set_xscale("log")
    ax.set_xlabel("training pairs (log scale)", fontsize=11)
    ax.set_ylabel("test BLEU, mean ± sd over seed runs", fontsize=11)
    ax.legend(fontsize=9, frameon=False)
    if len(gaps):
        ax = axes[1]
        ax.axhline(0, color="#999999", linewidth=1)
        err = [gaps["difference"] - gaps["ci_low"], gaps["ci_high"] - gaps["difference"]]
        ax.errorbar(gaps["train_pairs"], gaps["difference"], yerr=err, color="black", capsize=5, linewidth=1.5)
        found = gaps["verdict"] == FINDING
        ax.scatter(gaps["train_pairs"][found], gaps["difference"][found], color=colour(HIGH), s=60, zorder=3,
                   label="a finding")
        ax.scatter(gaps["train_pairs"][~found], gaps["difference"][~found], facecolor="white",
                   edgecolor=colour(HIGH), s=60, zorder=3, label="not a finding")
        ax.set_xscale("log")
        ax.set_xlabel("training pairs (log scale)", fontsize=11)
        ax.set_ylabel(f"{HIGH} − {LOW}, test BLEU (95 % interval)", fontsize=11)
        ax.legend(fontsize=9, frameon=False)
    for ax in axes:
        ax.set_xticks(sorted(set(scores["train_pairs"])), [f"{int(n):,}" for n in sorted(set(scores["train_pairs"]))])
        ax.minorticks_off()
    fig.suptitle("Test BLEU against training pairs (data sweep)", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def markdown(frame: pd.DataFrame, records: Sequence[dict], differing: Sequence[str], table_fn) -> str:
    """data_sweep.md: the closing sentence, the table, what the sizes shared and what else differed."""
    first = records[0].get("series", {}) if records else {}
    regimes = list(dict.fromkeys(frame.loc[frame["regime"] != GAP, "regime"]))
    rows = []
    for n, group in frame.groupby("train_pairs", sort=True):
        cells = [f"{int(n):,}"]
        for regime in regimes:
            r = group[group["regime"] == regime]
            cells.append("-" if not len(r) else f"{r.iloc[0]['test_bleu_mean']:.2f}"
                         + ("" if pd.isna(r.iloc[0]["test_bleu_sd"]) else f" ± {r.iloc[0]['test_bleu_sd']:.2f}")
                         + f" ({int(r.iloc[0]['n_seeds'])})")
        g = group[group["regime"] == GAP]
        cells += (["-", "-", "-"] if not len(g) else
                  [f"{g.iloc[0]['difference'] + 0.0:+.2f} ({_interval(g.iloc[0])})",
                   "-" if pd.isna(g.iloc[0]["p_adjusted"]) else f"{g.iloc[0]['p_adjusted']:.3f}", g.iloc[0]["verdict"]])
        rows.append(cells)
    walls = [(train_pairs(r, r.get("name", "?")), r.get("timings", {}).get("wall_s")) for r in records]
    total = sum(w for _, w in walls if w) if all(w for _, w in walls) else None
    nested = {r.get("config", {}).get("train_subset", "sample") for r in records} == {"nested"}
    lines = [f"# Data sweep {first.get('name', '')}".rstrip(), "", closing(frame), "",
             table_fn(["training pairs", *[f"`{r}` test BLEU (runs)" for r in regimes],
                       f"`{HIGH}` − `{LOW}` (95 % interval)", "p (Holm)", "verdict"], rows), "",
             "Test BLEU: mean ± sd over each regime's scored runs (best.json). The difference is each study's own test "
             "over its fresh seed runs with the test sources clustered (its pairwise.csv, Holm over its pairs). "
             f"Wall time: {format_duration(total)}" + (" (" + ", ".join(f"{n:,} pairs {format_duration(w)}"
                                                                       for n, w in walls) + ")" if total else "") + ".",
             ""]
    if nested:
        lines.append("Each size's training pairs are the first N of one seeded order of the training split: a "
                     "smaller size's pairs are a subset of every larger's.")
    else:
        lines.append("These studies' training pairs are **not nested** (train_subset `sample`): each size is its "
                     "own seeded sample, so the sizes differ in which pairs as well as how many.")
    if first.get("tokenizer"):
        lines.append(f"One tokenizer (`{first['tokenizer']}`)" + (f" and one tiny upstream (`{first['upstream']}`)"
                     if first.get("upstream") else "") + f" for every size: {first.get('shared', '')}.")
    if differing:
        lines.append("Besides the training pairs these studies differ in: " + ", ".join(differing)
                     + "; the sizes are not a clean sweep.")
    return "\n".join(lines) + "\n"


def write(labels: Sequence[str], analyses: Sequence, out: Path, differing: Sequence[str] = (),
          plots: bool = True) -> list[Path]:
    """data_sweep.csv, data_sweep.md and plots/data_sweep.png in `out` from the sweep's studies; the paths."""
    from study.analysis.conclusions import pairwise
    from study.analysis.report import markdown_table
    from study.common import write_atomic, write_text

    points = [Point(label, train_pairs(a.record, label), a.best, pairwise(a)) for label, a in zip(labels, analyses)]
    frame = table(points)
    by_size = sorted(zip([p.train_pairs for p in points], [a.record for a in analyses]), key=lambda x: x[0])
    written = [out / FILE, out / REPORT]
    write_text(written[0], frame.to_csv(index=False))
    write_text(written[1], markdown(frame, [r for _, r in by_size], differing, markdown_table))
    if plots and plot(frame, out / "plots" / PLOT, write_atomic):
        written.append(out / "plots" / PLOT)
    return written
