"""report.md: a study's results written up in Markdown, from a `study.analyze.StudyAnalysis`.

    from study.analyze import load
    from study.analysis.report import write_report
    a = load("results/<study>")
    write_report(a, a.path, plots=[])    # -> results/<study>/report.md

The report holds the comparison table (also written alone as comparison.md), sentences read off it
("What the numbers say"), the plots' captions, the original notebook's figures for comparison, and the
study's set-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from study.analysis import conclusions, expected_best, worth_training
from study.analysis.load import StudyAnalysis
from study.common import format_duration, write_text
from study.model import provenance
from study.outputs.record import searched_names

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


def _fmt(value, fmt: str) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if fmt == "usd":  # cents, or three significant digits for the tiny bills of small studies
        return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
    return format_duration(value) if fmt == "dur" else f"`{value}`" if fmt == "code" else format(value, fmt)


MD_SCORES = [("regime", "regime", "code"), ("state", "state", "s"), ("test BLEU", "test_bleu", ".2f"),
             ("test chrF", "test_chrf", ".2f"), ("test loss", "test_loss", ".3f"), ("test ppl", "test_ppl", ".2f"),
             ("exact match", "test_exact_match", ".3f"), ("best val BLEU", "best_val_bleu", ".2f")]
# How the usual searched hyperparameters are shown; any other a search space samples is shown as it is.
HYPER_FORMATS = {"lr": ("lr", ".2e"), "batch_size": ("batch", ".0f"), "num_beams": ("beams", ".0f"),
                 "warmup_ratio": ("warm-up", ".3g"), "weight_decay": ("weight decay", ".3g")}
MD_RUN = [("epochs to best", "best_epoch", ".0f"), ("best trial wall", "trial_wall_s", "dur"),
              ("search wall", "search_wall_s", "dur"), ("search trials' own time", "search_trial_s", "dur"),
              ("trials", "trials", ".0f"), ("pruned", "pruned", ".0f"),
              ("errored", "errored", ".0f"), ("trainable params", "trainable_params", ",.0f")]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def comparison_markdown(a: StudyAnalysis) -> str:
    hyper = [(HYPER_FORMATS.get(n, (n, ".4g"))[0], n, HYPER_FORMATS.get(n, (n, ".4g"))[1])
             for n in searched_names(a.record.get("search_spaces", {})) if n in a.comparison]
    cols = MD_SCORES + hyper + MD_RUN + ([("cost (USD)", "cost_usd", "usd")] if "cost_usd" in a.comparison else [])
    rows = [[_fmt(row[c], f) for _, c, f in cols] for _, row in a.comparison.iterrows()]
    return markdown_table([h for h, _, _ in cols], rows)


def _bleu_parts_sentence(c: pd.DataFrame, worse: str, better: str) -> str:
    """Why `worse` scores lower BLEU, from BLEU's parts: shorter output, or as long with the wrong words."""
    parts = ["test_length_ratio", "test_brevity_penalty", "test_bleu_p1"]
    if not set(parts) <= set(c.columns) or c.loc[[worse, better], parts].isna().any(axis=None):
        return ""
    (ratio_w, bp_w, p1_w), (ratio_b, bp_b, p1_b) = c.loc[worse, parts], c.loc[better, parts]
    why = (": no shorter, but fewer of its words are right." if bp_w >= bp_b - 0.005 and p1_w < p1_b else
           ": its output is shorter." if bp_w < bp_b - 0.005 else ".")
    return (f" BLEU's parts: `{worse}` writes {ratio_w:.2f}× the references' length (brevity penalty {bp_w:.3f}; "
            f"`{better}` {ratio_b:.2f}×, {bp_b:.3f}) with unigram precision {p1_w:.1f} against {p1_b:.1f}{why}")


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
        s += ". Whether that gap is a finding or the noise of seeds and test sentences: the test under \"How sure\"."
        s += (f" Its search took {format_duration(c.loc[w, 'search_wall_s'])} ({c.loc[w, 'trials']:.0f} trials), its best trial "
              f"{format_duration(c.loc[w, 'trial_wall_s'])}; `{n}`'s search took {format_duration(c.loc[n, 'search_wall_s'])} and its best "
              f"trial {format_duration(c.loc[n, 'trial_wall_s'])}.")
        if "cost_usd" in c:
            s += f" At the given rate: {_fmt(c.loc[w, 'cost_usd'], 'usd')} USD against {_fmt(c.loc[n, 'cost_usd'], 'usd')} USD."
        out.append(s)
    pretrained = [r for r in ("full", "decoder") if r in done.index]
    if "scratch" in done.index:
        for r in pretrained:
            d = bleu[r] - bleu["scratch"]
            verdict = ("higher with pre-training" if d > 0 else "`scratch` scored higher") + (
                "; whether that is a finding: the test over seeds and sentences under \"How sure\"")
            s = (f"Pre-training: `{r}` scored {bleu[r]:.2f} test BLEU against {bleu['scratch']:.2f} for `scratch` "
                 f"(random init), {d:+.2f}: {verdict}.")
            loss_r, loss_s = done.loc[r, "test_loss"], done.loc["scratch", "test_loss"]
            if pd.notna(loss_r) and pd.notna(loss_s) and (loss_r < loss_s) != (d > 0):
                s += (f" Test loss says the opposite ({loss_r:.3f} vs {loss_s:.3f}): `{'scratch' if d > 0 else r}` "
                      "gives the references more probability yet translates worse by BLEU, which scores the one "
                      "output decoding picks.")
                s += _bleu_parts_sentence(c, worse="scratch" if d > 0 else r, better=r if d > 0 else "scratch")
            out.append(s)
    elif pretrained:
        out.append("Whether pre-training helped needs a finished `scratch` regime to compare with.")
    if len(pretrained) == 2:
        d = bleu["decoder"] - bleu["full"]
        out.append(f"Training only the decoder (`decoder`, {c.loc['decoder', 'trainable_params']:,.0f} trainable "
                   f"parameters) against everything (`full`, {c.loc['full', 'trainable_params']:,.0f}): "
                   f"{bleu['decoder']:.2f} vs {bleu['full']:.2f} test BLEU ({d:+.2f}"
                   f"), {format_duration(c.loc['decoder', 'epoch_s_median'])} vs "
                   f"{format_duration(c.loc['full', 'epoch_s_median'])} per epoch (median).")
    out += _upstream_findings(a, done, bleu)
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


def _upstream_findings(a: StudyAnalysis, done: pd.DataFrame, bleu: pd.Series) -> list[str]:
    """What the pretrained weights saw (study.json's `upstream`; by the model's name for an older study), said
    wherever a regime starts from them: it decides whether `upstream` is zero-shot and what pre-training buys."""
    info = a.record.get("upstream") or provenance.describe(str(a.record.get("config", {}).get("model")))
    users = info.get("used_by", [r for r in a.comparison["regime"] if r != "scratch"])
    if "upstream" in done.index:
        return [f"`upstream` (the pretrained weights as they are, not trained here) scored {bleu['upstream']:.2f} "
                f"test BLEU. {provenance.sentence(info)}"]
    return [f"The pretrained regimes start from the upstream: {provenance.sentence(info)}"] if users else []


PLOT_CAPTIONS = {
    "learning_curves.png": "Validation loss and BLEU by epoch, and BLEU against the trial's wall time: each "
                           "regime's best trial bold, every other trial faint (x: stopped by ASHA).",
    "hyperparameters.png": "Each trial's best validation BLEU against each searched hyperparameter.",
    "epoch_time.png": "Wall time per epoch (training + validation) by regime, every epoch of every trial.",
    "seeds.png": "Test BLEU of each regime: every seed run of its best configuration (dots), mean ± sd (bar).",
    "importance.png": "Which searched hyperparameters mattered: fANOVA importance per regime (Optuna).",
    "worth_training.png": "Which part is worth training: each regime's test BLEU against the parameters it "
                          "trains (log scale), labelled with its best trial's wall time.",
    "expected_best.png": "Expected best validation BLEU by number of trials: each trained regime's curve over its "
                         "own trials (unbiased estimator), with its 95 % bootstrap band.",
}


def _original_section(a: StudyAnalysis) -> list[str]:
    o, c = ORIGINAL_NOTEBOOK, a.comparison.set_index("regime")
    rows = [[f"`{r}`", f"{v['bleu']:.2f}", f"~{v['epoch_s']} s", v["note"],
             _fmt(c["test_bleu"].get(r), ".2f"), format_duration(c["epoch_s_median"].get(r))] for r, v in o["regimes"].items()]
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


def sampler_line(regime: str, s: dict) -> str:
    """One line per regime on how its trials were proposed (study.json's `samplers`)."""
    how = (f"TPE (first {s.get('n_startup_trials')} of {s.get('trials')} trials at random, multivariate "
           f"{s.get('multivariate')}, constant liar {s.get('constant_liar')})" if s.get("sampler") == "tpe"
           else f"{s.get('sampler')} sampling ({s.get('trials')} trials)")
    seed = "the study seed for every regime" if s.get("same_draws") else "a seed of its own"
    if s.get("enqueued_grid_points"):  # nothing trains: its trials are the decoding grid's points, in order
        return (f"- `{regime}` trials: the {s['enqueued_grid_points']} points of its decoding grid, enqueued "
                "(no sampler proposal)")
    return f"- `{regime}` trials proposed by {how}, sampler seed {s.get('seed')} ({seed})"


def timings_section(t: dict | None) -> list[str]:
    """Where the study's minutes went (study.json's `timings`), as one small table."""
    if not t:
        return []
    steps = ("search", "seed_runs", "test_scoring", "export", "pruning")
    if "data_and_upstream_s" in t:  # studies from before the upstream was pretrained beside the searches
        rows = [["data, tokenizer, upstream", "", format_duration(t.get("data_and_upstream_s"))]]
    else:
        rows = [["data, tokenizer", "", format_duration(t.get("data_s"))]]
        if "upstream_s" in t:
            rows.append(["tiny upstream (pretrained or cached), beside the searches", "", format_duration(t["upstream_s"])])
    for regime, phases in t.get("regimes", {}).items():
        rows += [[f"`{regime}`", step.replace("_", " "), format_duration(phases.get(f"{step}_s"))]
                 for step in steps if f"{step}_s" in phases]
    if t.get("regimes_at_once", 1) > 1 and "regimes_s" in t:  # the steps above overlap in time
        rows.append([f"all regimes, {t['regimes_at_once']} side by side", "", format_duration(t["regimes_s"])])
    rows.append(["analysis", "", format_duration(t.get("analysis_s")) if "analysis_s" in t else "(this report)"])
    busy = t.get("slot_busy_share")
    return ["## Where the time went", "",
            f"Wall {format_duration(t.get('wall_s'))}; the {t.get('slots')} trial slot(s) were busy "
            + (f"{100 * busy:.0f} % of the time from the first search's start to the last test scoring's end "
               f"({format_duration(t.get('trial_seconds'))} of trials' own training and validation)"
               + (f"; {100 * t['slot_work_share']:.0f} % counting the test scoring tasks and the upstream's "
                  f"pretraining beside the searches." if t.get("slot_work_share") is not None else ".")
               + (f" The trials ran in {t['trial_processes']} worker processes, each of which imported torch and "
                  f"transformers before its first epoch." if t.get("trial_processes") else "")
               if busy is not None else "(no trial ran in this run)."), "",
            markdown_table(["stage", "step", "time"], rows), ""]


def scheduler_line(regime: str, s: dict | None) -> str:
    """One line per trained regime on how ASHA stopped its trials (study.json's `schedulers`)."""
    if s is None:
        return f"- `{regime}`: no early stopping"
    wait = (f", and a rung stops nothing before {s['min_results']} trials have reached it"
            if s.get("min_results", 1) > 1 else "")
    return (f"- `{regime}` stopped by ASHA on `{s.get('rung_metric')}` at rungs from epoch {s.get('grace_period')}, "
            f"keeping 1/{s.get('reduction_factor')}{wait}")


def render_report(a: StudyAnalysis, images: list[Path], pairs: pd.DataFrame | None = None) -> str:
    """report.md's text; `pairs`: `conclusions.pairwise(a)` if the caller has it (None: computed here)."""
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
    lines += worth_training.section(a, markdown_table)
    lines += conclusions.section(a, markdown_table, pairs)
    lines += expected_best.section(a, next((f"plots/{p.name}" for p in images if p.name == "expected_best.png"), None))
    if images:
        lines += ["## Plots", ""]
        for p in images:
            lines += [f"{PLOT_CAPTIONS.get(p.name, p.stem)}", "", f"![{p.stem}](plots/{p.name})", ""]
    lines += _original_section(a)
    lines += timings_section(r.get("timings"))
    lines += ["## Set-up", "",
              f"Budget: {budget.get('num_samples')} trials per trained regime (upstream: one per beam choice), at most "
              f"{budget.get('max_epochs')} epochs, {budget.get('max_concurrent')} at once, "
              f"{budget.get('cpus_per_trial')} CPU and {budget.get('gpus_per_trial')} GPU per trial, "
              f"max_failures {budget.get('max_failures')}; Optuna and the best trial on validation BLEU at the "
              f"trial's own beams, each trial by its best epoch.", "",
              *[sampler_line(regime, settings) for regime, settings in r.get("samplers", {}).items()],
              *[scheduler_line(regime, settings) for regime, settings in r.get("schedulers", {}).items()], ""]
    for regime, space in r.get("search_spaces", {}).items():
        lines.append(f"- `{regime}` searches {json.dumps(space.get('search'))}; fixed {json.dumps(space.get('fixed'))}"
                     f"; asha {json.dumps(space.get('asha'))}")
    lines += ["", f"BLEU: `{r.get('bleu_signature')}`; chrF: `{r.get('chrf_signature')}`.", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()) + ".", "",
              "Config:", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    return "\n".join(lines)

def write_report(analysis: StudyAnalysis, study_dir: Path, plots: list[Path], pairs: pd.DataFrame | None = None) -> Path:
    """Write study_dir/report.md, linking `plots` (PNGs under study_dir/plots); returns its path. `pairs`: the
    table of pairwise.csv (`conclusions.pairwise`), if already computed."""
    path = Path(study_dir) / "report.md"
    write_text(path, render_report(analysis, plots, pairs))
    return path
