"""What a study's figures let it conclude, and how sure: each regime's test scores over seeds, the paired
bootstrap between every two regimes, the original notebook's claims answered with those numbers, and which
hyperparameters mattered (Optuna's fANOVA importances). Read from the study's files, like the rest of the
analysis (no Ray, no torch).

A difference between two regimes is called a finding only when its 95 % paired-bootstrap interval excludes
zero; otherwise the report says "no significant difference at this budget".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from study.analysis.load import StudyAnalysis
from study.metrics.significance import RESAMPLES, paired_bootstrap

# fANOVA fits a random forest of BLEU over the searched values: below this many trials it fits noise.
MIN_IMPORTANCE_TRIALS = 6
NO_DIFFERENCE = "no significant difference at this budget"
Table = Callable[[list[str], list[list[str]]], str]


def _lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").split("\n")[:-1]
    except OSError:
        return None


def pairwise(a: StudyAnalysis, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Every pair of finished regimes on the same test sentences: `a` (the higher test BLEU) minus `b`, its 95 %
    interval and sacrebleu's paired-bootstrap p-value, from each regime's test.hyp.txt (its best trial) and
    test.ref.txt; `command` re-computes the p-value with the sacrebleu command line."""
    c = a.comparison
    done = c[(c["state"] == "finished") & c["test_bleu"].notna()].sort_values("test_bleu", ascending=False)
    texts = {r: (_lines(a.path / r / "test.hyp.txt"), _lines(a.path / r / "test.ref.txt")) for r in done["regime"]}
    texts = {r: (h, ref) for r, (h, ref) in texts.items() if h is not None and ref is not None and len(h) == len(ref)}
    regimes = [r for r in done["regime"] if r in texts]
    rows = []
    for i, high in enumerate(regimes):
        for low in regimes[i + 1:]:
            if texts[high][1] != texts[low][1]:  # scored on different test sentences: nothing to pair
                continue
            r = paired_bootstrap(texts[low][1], baseline=texts[low][0], system=texts[high][0], resamples=resamples)
            rows.append({"a": high, "b": low, "bleu_a": r["bleu_system"], "bleu_b": r["bleu_baseline"],
                         "difference": r["difference"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                         "p_value": r["p_value"], "significant": r["significant"], "signature": r["signature"],
                         "command": f"sacrebleu {low}/test.ref.txt -i {low}/test.hyp.txt {high}/test.hyp.txt "
                                    f"--paired-bs --paired-bs-n {resamples}"})
    return pd.DataFrame(rows, columns=["a", "b", "bleu_a", "bleu_b", "difference", "ci_low", "ci_high", "p_value",
                                       "significant", "signature", "command"])


def verdict(row) -> str:
    """One sentence on one pair, following its interval."""
    numbers = (f"{row['difference']:+.2f} BLEU (95 % CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, "
               f"p = {row['p_value']:.3f})")
    if row["significant"]:
        return f"`{row['a']}` − `{row['b']}`: {numbers}: a finding, `{row['a']}` translates this test set better."
    return f"`{row['a']}` − `{row['b']}`: {numbers}: {NO_DIFFERENCE}."


def _pair(pairs: pd.DataFrame, x: str, y: str):
    hit = pairs[((pairs["a"] == x) & (pairs["b"] == y)) | ((pairs["a"] == y) & (pairs["b"] == x))]
    return hit.iloc[0] if len(hit) else None


def original_claims(pairs: pd.DataFrame) -> list[str]:
    """The original notebook's two claims (ORIGINAL.md: decoder ≈ full, 50.86 vs 53.88; scratch fails, 0.15),
    each answered with this study's paired bootstrap."""
    out = []
    p = _pair(pairs, "decoder", "full")
    if p is None:
        out.append("Claim \"training only the decoder is about as good as training everything\": needs finished "
                   "`decoder` and `full` regimes.")
    elif not p["significant"]:
        out.append(f"Claim \"decoder ≈ full\" (original: 50.86 vs 53.88 BLEU): consistent here, {NO_DIFFERENCE} "
                   f"({verdict(p)})")
    else:
        out.append(f"Claim \"decoder ≈ full\" (original: 50.86 vs 53.88 BLEU): not borne out here: {verdict(p)}")
    against = [q for q in (_pair(pairs, r, "scratch") for r in ("full", "decoder")) if q is not None]
    if not against:
        out.append("Claim \"training from scratch fails\": needs a finished `scratch` and a pretrained regime.")
    for q in against:
        other = q["a"] if q["b"] == "scratch" else q["b"]
        worse = q["significant"] and q["b"] == "scratch"
        out.append(f"Claim \"scratch fails\" (original: 0.15 BLEU with one untuned lr), against `{other}`: "
                   + ("`scratch` is significantly worse here, though tuned: " if worse else
                      "`scratch` is not significantly worse here: " if not q["significant"] else
                      "`scratch` is significantly *better* here: ") + verdict(q))
    return out


def _pm(mean, sd, fmt: str = ".2f") -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return format(mean, fmt) + ("" if sd is None or pd.isna(sd) else f" ± {format(sd, fmt)}")


def seeds_markdown(a: StudyAnalysis, table: Table) -> str:
    """Per finished regime: test BLEU, multi-reference BLEU, chrF and loss as mean ± sd over its seed runs."""
    c = a.comparison[a.comparison["state"] == "finished"]
    rows = [[f"`{r['regime']}`", _fmt_n(r.get("test_bleu_n")), _pm(r.get("test_bleu_mean"), r.get("test_bleu_sd")),
             _pm(r.get("test_bleu_multi_mean"), r.get("test_bleu_multi_sd")),
             _pm(r.get("test_chrf_mean"), r.get("test_chrf_sd")),
             _pm(r.get("test_loss_mean"), r.get("test_loss_sd"), ".3f")] for _, r in c.iterrows()]
    return table(["regime", "seeds (n)", "test BLEU", "multi-ref BLEU", "test chrF", "test loss"], rows)


def _fmt_n(n) -> str:
    return "-" if n is None or pd.isna(n) else f"{int(n)}"


def importances(a: StudyAnalysis) -> dict[str, dict[str, float] | str]:
    """Per trained regime: fANOVA importance of each searched hyperparameter (summing to 1) for validation
    BLEU at the last epoch every trial reached (ASHA's first rung: pruned trials count too, so the survivors'
    selection does not bias it); or the sentence saying why it is skipped."""
    import optuna

    db = a.path / "optuna.db"
    out: dict[str, dict[str, float] | str] = {}
    for regime in a.comparison["regime"]:
        if not a.trains(regime):
            continue
        if not db.is_file():  # opening a missing SQLite file would create it inside the study
            out[regime] = "skipped: the study has no optuna.db"
            continue
        try:
            trials = optuna.load_study(study_name=regime, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
        except (KeyError, ValueError, ImportError) as err:  # no optuna.db, or no study of that name
            out[regime] = f"no Optuna study to read ({type(err).__name__})"
            continue
        scored = [t for t in trials if t.intermediate_values]
        if len(scored) < MIN_IMPORTANCE_TRIALS:
            out[regime] = (f"skipped: {len(scored)} trial(s) reported a validation score, fewer than the "
                           f"{MIN_IMPORTANCE_TRIALS} fANOVA needs")
            continue
        epoch = min(max(t.intermediate_values) for t in scored)
        varied = [n for n in scored[0].distributions if len({repr(t.params.get(n)) for t in scored}) > 1]
        if not varied:
            out[regime] = "skipped: every trial had the same hyperparameters"
            continue
        study = optuna.create_study(direction="maximize")
        study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                    value=t.intermediate_values[epoch]) for t in scored])
        values = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied)
        out[regime] = {"epoch": epoch, "trials": len(scored), **{k: float(v) for k, v in values.items()}}
    return out


def importance_sentences(found: dict[str, dict[str, float] | str]) -> list[str]:
    out = []
    for regime, result in found.items():
        if isinstance(result, str):
            out.append(f"`{regime}`: parameter importance {result}.")
            continue
        shares = ", ".join(f"{k} {v:.0%}" for k, v in result.items() if k not in ("epoch", "trials"))
        out.append(f"`{regime}` ({result['trials']} trials, validation BLEU at epoch {result['epoch']}): {shares} "
                   f"of the explained variance (fANOVA).")
    return out


def section(a: StudyAnalysis, table: Table) -> list[str]:
    """The report's "How sure" section (Markdown lines); `table(header, rows)` draws its tables (the report's
    own `markdown_table`, passed in because the report imports this module)."""
    pairs = pairwise(a)
    budget = a.record.get("budget", {})
    lines = ["## How sure: seeds, paired bootstrap, references", "",
             f"Each regime's best configuration was trained with {budget.get('seeds', 1)} seed(s) (new "
             "initialisation and batch order; same data and upstream); mean ± sample sd over those runs:", "",
             seeds_markdown(a, table), "",
             "Multi-ref BLEU scores each distinct test source once against all its references (the test split's "
             "rows that share a source); test BLEU, which ranks the regimes as in the original notebook, scores "
             "each row against its one reference.", ""]
    if len(pairs):
        lines += [f"Paired bootstrap over the test sentences ({RESAMPLES} resamples, sacrebleu's; the best trial of "
                  "each regime). A difference is a finding only when its 95 % interval excludes zero.", "",
                  table(["a", "b", "BLEU a − b", "95 % CI", "p", "verdict"],
                                 [[f"`{r['a']}`", f"`{r['b']}`", f"{r['difference']:+.2f}",
                                   f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}", f"{r['p_value']:.3f}",
                                   "finding" if r["significant"] else NO_DIFFERENCE] for _, r in pairs.iterrows()]),
                  "", *[f"- {verdict(r)}" for _, r in pairs.iterrows()], "",
                  f"Re-check one with sacrebleu: `{pairs['command'].iloc[0]}` (in the study folder).", "",
                  "### The original notebook's claims", "", *[f"- {s}" for s in original_claims(pairs)], ""]
    else:
        lines += ["No two finished regimes share test translations yet: no paired comparison.", ""]
    lines += ["### Which hyperparameters mattered", "",
              *([f"- {s}" for s in importance_sentences(importances(a))] or ["- No trained regime."]), ""]
    return lines
