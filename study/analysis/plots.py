"""The study's plots (PNG), drawn from a `study.analyze.StudyAnalysis`; one colour per regime in every plot.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg), never pyplot, so drawing
them changes no backend or global state of a notebook that imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from study.common import format_duration
from study.outputs.record import searched_names

# Okabe-Ito colours (readable with colour-blindness), the same regime -> colour everywhere.
REGIME_COLOURS = {"upstream": "#666666", "scratch": "#D55E00", "decoder": "#0072B2", "full": "#009E73",
                  "lora": "#CC79A7", "encoder": "#56B4E9", "frozen-embeddings": "#E69F00"}
# Regimes registered elsewhere (Paul Tol's muted colours: apart from the Okabe-Ito ones above).
OTHER_COLOURS = ["#000000", "#882255", "#117733", "#999933"]
# How a trial ended, drawn at its last point (finished trials get no mark).
END_MARKERS = {"pruned": "x", "diverged": "v", "errored": "s", "running": ">", "pending": ">"}
END_LABELS = {"pruned": "stopped by ASHA", "diverged": "diverged", "errored": "errored", "running": "running"}


def colour(regime: str, regimes: list[str] | None = None) -> str:
    if regime in REGIME_COLOURS:
        return REGIME_COLOURS[regime]
    others = [r for r in (regimes or []) if r not in REGIME_COLOURS]
    return OTHER_COLOURS[others.index(regime) % len(OTHER_COLOURS)] if regime in others else "#000000"


def _figure(width: float, height: float, ncols: int) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=10)
    return fig, list(axes)


def best_trials(analysis) -> dict[str, str]:
    """Regime -> id of its best trial: best.json's, else the best validation BLEU so far."""
    t = analysis.trials
    out = {}
    for regime, group in t.groupby("regime", sort=False) if len(t) else []:
        chosen = group[group["is_best"]]
        if len(chosen):
            out[regime] = chosen["trial_id"].iloc[0]
        elif group["best_val_bleu"].notna().any():
            out[regime] = group.loc[group["best_val_bleu"].idxmax(), "trial_id"]
    return out


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


def _end_legend(statuses) -> list[Line2D]:
    return [Line2D([], [], color="#333333", marker=END_MARKERS[s], linestyle="none", markersize=8, label=END_LABELS[s])
            for s in ("pruned", "diverged", "errored", "running") if s in set(statuses)]


def learning_curves(analysis, path: Path, save) -> bool:
    e, regimes = analysis.epochs, list(analysis.comparison["regime"])
    if e.empty:
        return False
    best = best_trials(analysis)
    fig, axes = _figure(16, 5.2, 3)
    panels = [("epoch", "val_loss", "validation loss"), ("epoch", "val_bleu", "validation BLEU"),
              ("wall", "val_bleu", "validation BLEU")]
    longest = e["time_total_s"].max()
    unit, scale = ("seconds", 1) if not longest > 180 else ("minutes", 60) if longest <= 3 * 3600 else ("hours", 3600)
    e = e.assign(wall=e["time_total_s"] / scale)
    handles = []
    for regime in regimes:
        c, group = colour(regime, regimes), e[e["regime"] == regime]
        if group.empty:
            continue
        if not analysis.trains(regime) or group["epoch"].max() == 0:  # evaluated once, before any training: a reference
            row = group[group["trial_id"] == best.get(regime)].iloc[0] if regime in best else group.iloc[0]
            for ax, (_, y, _) in zip(axes, panels):
                ax.axhline(row[y], color=c, linestyle="--", linewidth=2)
                ax.annotate(f"{regime} zero-shot: {row[y]:.2f}", (0.99, row[y]), xycoords=("axes fraction", "data"),
                            ha="right", va="bottom", fontsize=9, color=c)
            handles.append(Line2D([], [], color=c, linestyle="--", linewidth=2, label=f"{regime} (zero-shot)"))
            continue
        for trial_id, trial in group.groupby("trial_id", sort=False):
            is_best, status = trial_id == best.get(regime), trial["status"].iloc[0]
            for ax, (x, y, _) in zip(axes, panels):
                ax.plot(trial[x], trial[y], color=c, linewidth=2.8 if is_best else 1.0, alpha=1.0 if is_best else 0.35,
                        marker="o" if is_best else None, markersize=5, zorder=3 if is_best else 2)
                if status in END_MARKERS and trial[y].notna().any():
                    last = trial[trial[y].notna()].iloc[-1]
                    ax.plot(last[x], last[y], color=c, marker=END_MARKERS[status], markersize=9, linestyle="none",
                            markeredgewidth=2, alpha=0.9, zorder=4)
        best_label = "best trial" if regime not in analysis.unfinished else "best so far"
        handles.append(Line2D([], [], color=c, linewidth=2.8, marker="o", label=f"{regime} ({best_label})"))
    for ax, (x, _, label) in zip(axes, panels):
        ax.set_xlabel("epoch" if x == "epoch" else f"wall time since the trial started ({unit})", fontsize=11)
        ax.set_ylabel(label, fontsize=11)
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title("Validation loss by epoch", fontsize=12)
    axes[1].set_title("Validation BLEU by epoch", fontsize=12)
    axes[2].set_title("Validation BLEU against wall time", fontsize=12)
    handles += [Line2D([], [], color="#333333", alpha=0.35, label="other trials (faint)")] + _end_legend(e["status"])
    ncol = len(handles) if len(handles) <= 8 else (len(handles) + 1) // 2
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=10, frameon=False)
    fig.suptitle(f"Learning curves — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def hyperparameters(analysis, path: Path, save) -> bool:
    t, regimes = analysis.trials, list(analysis.comparison["regime"])
    names = searched_names(analysis.record.get("search_spaces", {}))
    # A parameter every trial shares (one choice) says nothing about BLEU: no panel for it.
    names = [n for n in names if n in t and t[n].nunique() > 1 and t["best_val_bleu"].notna().any()]
    if not names:
        return False
    fig, axes = _figure(max(5.2 * len(names), 7.5), 4.8, len(names))
    rng = np.random.default_rng(0)
    spaces = analysis.record.get("search_spaces", {})
    for ax, name in zip(axes, names):
        specs = [s["search"][name] for s in spaces.values() if name in s.get("search", {})]
        categorical = any(s.get("distribution") == "choice" for s in specs)
        values = sorted(t[name].dropna().unique(), key=lambda v: (isinstance(v, str), v))
        for i, regime in enumerate(regimes):
            g = t[(t["regime"] == regime) & t[name].notna() & t["best_val_bleu"].notna()]
            if g.empty:
                continue
            x = g[name].astype(float)
            if categorical:  # dodge regimes side by side around each choice, jitter so equal points stay visible
                x = (g[name].map({v: k for k, v in enumerate(values)}) + (i - (len(regimes) - 1) / 2) * 0.12
                     + rng.uniform(-0.04, 0.04, len(g)))
            for status, sg in g.groupby("status"):
                ax.scatter(x[sg.index], sg["best_val_bleu"], color=colour(regime, regimes), s=70 if status != "pruned" else 60,
                           marker=END_MARKERS.get(status, "o"), alpha=0.85, linewidths=2 if status == "pruned" else 0.5,
                           edgecolors="white" if status not in ("pruned",) else None, zorder=3)
        if categorical:
            ax.grid(False, axis="x")
            ax.set_xticks(range(len(values)), [_tick(v) for v in values])
            ax.set_xlim(-0.6, len(values) - 0.4)
        elif any(s.get("distribution") == "loguniform" for s in specs):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e-0", "e-")))
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(name + (" (log scale)" if ax.get_xscale() == "log" else ""), fontsize=11)
        ax.set_ylabel("trial's best validation BLEU", fontsize=11)
        ax.set_title(f"BLEU against {name}", fontsize=12)
    handles = [Line2D([], [], color=colour(r, regimes), marker="o", linestyle="none", markersize=8, label=r)
               for r in regimes if r in set(t["regime"])]
    handles += [Line2D([], [], color="#333333", marker="o", linestyle="none", markersize=8, label="finished")]
    handles += _end_legend(t.loc[t["best_val_bleu"].notna(), "status"])
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=10, frameon=False)
    fig.suptitle(f"Hyperparameters — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def epoch_time(analysis, path: Path, save) -> bool:
    e, regimes = analysis.epochs, list(analysis.comparison["regime"])
    shown = [r for r in regimes if (e["regime"] == r).any() and e.loc[e["regime"] == r, "epoch_time_s"].notna().any()]
    if not shown:
        return False
    fig, (ax,) = _figure(max(7.0, 2.0 * len(shown) + 2), 4.8, 1)
    ax.grid(False, axis="x")
    rng = np.random.default_rng(0)
    top = e["epoch_time_s"].max()
    for i, regime in enumerate(shown):
        y = e.loc[e["regime"] == regime, "epoch_time_s"].dropna()
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(y)), y, color=colour(regime, regimes), alpha=0.6, s=36, zorder=3)
        median = float(y.median())
        ax.hlines(median, i - 0.3, i + 0.3, color="black", linewidth=2.5, zorder=4)
        ax.text(i + 0.33, median, format_duration(median), va="center", fontsize=10)
    labels = [r if analysis.trains(r) else f"{r}\n(evaluation only)" for r in shown]
    ax.set_xticks(range(len(shown)), labels, fontsize=11)
    ax.set_xlim(-0.6, len(shown) - 0.1)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("seconds per epoch (training + validation)", fontsize=11)
    ax.set_title("each dot: one epoch of one trial; bar: median", fontsize=10)
    fig.suptitle(f"Wall time per epoch — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def seed_spread(analysis, path: Path, save) -> bool:
    """Each regime's test BLEU: a dot per seed run of its best configuration, the mean with ± sd as a bar."""
    t, regimes = analysis.trials, list(analysis.comparison["regime"])
    if not len(t) or "test_bleu" not in t or t["test_bleu"].notna().sum() == 0:
        return False
    shown = [r for r in regimes if t.loc[t["regime"] == r, "test_bleu"].notna().any()]
    fig, (ax,) = _figure(max(7.0, 1.8 * len(shown) + 2), 4.8, 1)
    ax.grid(False, axis="x")
    rng = np.random.default_rng(0)
    for i, regime in enumerate(shown):
        scores = t.loc[(t["regime"] == regime) & t["test_bleu"].notna(), "test_bleu"].astype(float)
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(scores)), scores, color=colour(regime, regimes), s=46,
                   alpha=0.8, zorder=3)
        sd = float(scores.std()) if len(scores) >= 2 else 0.0
        ax.errorbar(i + 0.22, float(scores.mean()), yerr=sd, color="black", capsize=6, marker="_", markersize=16,
                    linewidth=2, zorder=4)
        ax.text(i + 0.3, float(scores.mean()), f"{scores.mean():.2f}" + (f" ± {sd:.2f}" if len(scores) >= 2 else "")
                + f"\nn={len(scores)}", va="center", fontsize=9)
    ax.set_xticks(range(len(shown)), shown, fontsize=11)
    ax.set_xlim(-0.5, len(shown) - 0.2)
    ax.set_ylabel("test BLEU", fontsize=11)
    ax.set_title("each dot: one seed run of the regime's best configuration; bar: mean ± sd", fontsize=10)
    fig.suptitle(f"Test BLEU over seeds — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def importance(analysis, path: Path, save) -> bool:
    """fANOVA importance of each searched hyperparameter, one bar group per regime that has enough trials."""
    from study.analysis.conclusions import importances

    found = {r: v for r, v in importances(analysis).items() if isinstance(v, dict)}
    if not found:
        return False
    names = sorted({k for v in found.values() for k in v if k not in ("epoch", "trials")})
    regimes = list(analysis.comparison["regime"])
    fig, (ax,) = _figure(max(7.0, 1.6 * len(names) * len(found) + 2), 4.8, 1)
    width = 0.8 / len(found)
    for i, (regime, values) in enumerate(found.items()):
        x = np.arange(len(names)) + (i - (len(found) - 1) / 2) * width
        ax.bar(x, [values.get(n, 0.0) for n in names], width=width, color=colour(regime, regimes),
               label=f"{regime} ({values['trials']} trials, epoch {values['epoch']})")
    ax.set_xticks(range(len(names)), names, fontsize=11)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of validation BLEU's variance (fANOVA)", fontsize=11)
    ax.legend(fontsize=9, frameon=False)
    fig.suptitle(f"Which hyperparameters mattered — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def worth_training(analysis, path: Path, save) -> bool:
    """Test BLEU against trainable parameters (log x), the frontier joined; untrained regimes as lines."""
    from study.analysis.worth_training import worth_training as table

    w, regimes = table(analysis), list(analysis.comparison["regime"])
    trained = w[w["trainable_params"] > 0]
    if trained.empty:
        return False
    fig, (ax,) = _figure(8.0, 5.2, 1)
    by_params = {name: k for k, name in enumerate(trained.sort_values("trainable_params")["regime"])}
    for r in w.itertuples():
        c = colour(r.regime, regimes)
        if r.trainable_params <= 0:  # log x has no 0: a zero-shot reference line instead
            ax.axhline(r.test_bleu, color=c, linestyle="--", linewidth=1.5)
            ax.annotate(f"{r.regime} (nothing trained): {r.test_bleu:.2f}", (0.01, r.test_bleu),
                        xycoords=("axes fraction", "data"), va="bottom", fontsize=9, color=c)
            continue
        ax.errorbar(r.trainable_params, r.test_bleu, yerr=None if np.isnan(r.test_bleu_sd) else r.test_bleu_sd,
                    color=c, marker="D" if r.frontier else "o", markersize=9, capsize=4, linestyle="none", zorder=3)
        below = by_params[r.regime] % 2  # neighbours along x alternate above and below: their labels never overlap
        ax.annotate(f"{r.regime}\n{format_duration(r.trial_wall_s)}", (r.trainable_params, r.test_bleu),
                    textcoords="offset points", xytext=(8, -26 if below else 6), fontsize=9, color=c)
    front = trained[trained["frontier"]].sort_values("trainable_params")
    ax.plot(front["trainable_params"], front["test_bleu"], color="#333333", alpha=0.4, linewidth=1.2, zorder=2)
    ax.set_xscale("log")
    low, high = trained["trainable_params"].min(), trained["trainable_params"].max()
    ax.set_xlim(low / 3, high * 4)  # room for the labels right of the largest
    ax.set_xlabel("trainable parameters of the best trial (log scale)", fontsize=11)
    ax.set_ylabel("test BLEU", fontsize=11)
    ax.set_title("◆ frontier: no regime with fewer trainable parameters scored higher; label: best trial's wall time",
                 fontsize=9)
    fig.suptitle(f"Which part is worth training — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def expected_best(analysis, path: Path, save) -> bool:
    """Expected best validation BLEU by number of trials (`study.analysis.expected_best`): a curve per trained
    regime with its 95 % bootstrap band, k = 1 .. its n trials."""
    from study.analysis.expected_best import RESAMPLES, curves

    c, regimes = curves(analysis), list(analysis.comparison["regime"])
    if c.empty or c["n"].max() < 2:
        return False
    fig, (ax,) = _figure(8.0, 5.2, 1)
    for regime, g in c.groupby("regime", sort=False):
        col = colour(regime, regimes)
        ax.fill_between(g["trials"], g["low"], g["high"], color=col, alpha=0.15, linewidth=0)
        pruned = int(g["pruned"].iloc[0])
        ax.plot(g["trials"], g["expected_best"], color=col, marker="o", markersize=5, linewidth=2.2, zorder=3,
                label=f"{regime} ({len(g)} trials" + (f", {pruned} stopped early)" if pruned else ")"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.8, c["trials"].max() + 0.2)
    ax.set_xlabel("number of trials k", fontsize=11)
    ax.set_ylabel("expected best validation BLEU of k trials", fontsize=11)
    ax.set_title(f"unbiased estimator over the study's own trials; band: 95 % bootstrap ({RESAMPLES} resamples)\n"
                 "a trial stopped early counts with the best it reached (a lower bound)", fontsize=9)
    ax.legend(fontsize=9, frameon=False, loc="lower right")
    fig.suptitle(f"Expected best by number of trials — study {analysis.path.name}", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


PLOTS: dict[str, Callable] = {"learning_curves.png": learning_curves, "hyperparameters.png": hyperparameters,
                              "epoch_time.png": epoch_time, "seeds.png": seed_spread, "importance.png": importance,
                              "worth_training.png": worth_training, "expected_best.png": expected_best}


def make_plots(analysis, out_dir: Path, save) -> list[Path]:
    """Draw every plot that has data; `save(path, write)` calls write(tmp_path) and moves it into place."""
    written = []
    for name, draw in PLOTS.items():
        if draw(analysis, out_dir / name, save):
            written.append(out_dir / name)
    return written


def cross_study(comparison, path: Path, save) -> bool:
    """Several studies (`study.analysis.compare`): each regime's best-trial test BLEU, a dot per study, the mean
    with ± sd as a bar; a line joins each study's regimes, so a study ranking them differently stands out."""
    scores, regimes = comparison.scores, list(comparison.table["regime"])
    if scores.empty:
        return False
    fig, (ax,) = _figure(max(7.0, 1.8 * len(regimes) + 3), 4.8, 1)
    ax.grid(False, axis="x")
    x = {r: i for i, r in enumerate(regimes)}
    for study in comparison.studies:
        own = scores[scores["study"] == study].sort_values("regime", key=lambda col: col.map(x))
        ax.plot(own["regime"].map(x), own["test_bleu"], color="#999999", alpha=0.5, linewidth=1, zorder=2)
    for row in comparison.table.itertuples():
        values = scores.loc[scores["regime"] == row.regime, "test_bleu"].astype(float)
        ax.scatter([x[row.regime]] * len(values), values, color=colour(row.regime, regimes), s=46, alpha=0.8,
                   zorder=3)
        sd = 0.0 if np.isnan(row.test_bleu_sd) else float(row.test_bleu_sd)
        ax.errorbar(x[row.regime] + 0.22, row.test_bleu_mean, yerr=sd, color="black", capsize=6, marker="_",
                    markersize=16, linewidth=2, zorder=4)
        ax.text(x[row.regime] + 0.3, row.test_bleu_mean, f"{row.test_bleu_mean:.2f}"
                + (f" ± {sd:.2f}" if row.studies >= 2 else "") + f"\nn={row.studies}", va="center", fontsize=9)
    ax.set_xticks(range(len(regimes)), regimes, fontsize=11)
    ax.set_xlim(-0.5, len(regimes) - 0.2)
    ax.set_ylabel("test BLEU of the regime's best trial", fontsize=11)
    ax.set_title("each dot: one study (grey lines join a study's regimes); bar: mean ± sd across studies", fontsize=10)
    verdict = "comparable" if comparison.comparable else "differ in " + ", ".join(
        dict.fromkeys(d.split(":")[0] for d in comparison.differences))
    fig.suptitle(f"{len(comparison.studies)} studies ({verdict})", fontsize=13)
    save(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True
