"""What a study's figures let it conclude, and how sure: each regime's test scores over seeds, the test of
"regime A beats regime B" between every two regimes, the original notebook's claims answered with it, and
which hyperparameters mattered (Optuna's fANOVA importances). Read from the study's files, like the rest
of the analysis (no Ray, no torch).

The test (`study.metrics.significance.seeded_bootstrap`) resamples each regime's seed runs (its best trial
and the seed re-runs, `test.hyp.txt` and `test.hyp.seed<N>.txt`) and the test sources (the rows of one
English source together, from `test.src.txt`), so that its interval carries the variance of training as well
as of the test sentences. Its p-values are Holm-adjusted over the study's family of pairwise comparisons. A
difference is called "a finding" only when the adjusted p-value is below ALPHA, its 95 % interval excludes
zero, and every trained regime of the pair ran at least two seeds (one seed cannot show training's spread);
otherwise it is "inconclusive at this budget", with the reason. The sentence-only bootstrap of the two best
trials' outputs (what `sacrebleu --paired-bs` measures: two fixed models) stays as a secondary column.
`pairwise.csv` holds the table.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import sacrebleu

from study.analysis.load import StudyAnalysis
from study.common import check_sqlite, write_text
from study.config import StudyError
from study.metrics.significance import RESAMPLES, holm, seeded_bootstrap

# fANOVA fits a random forest of BLEU over the searched values: below this many trials it fits noise.
MIN_IMPORTANCE_TRIALS = 6
ALPHA = 0.05  # the family-wise error rate Holm's correction holds
FINDING = "a finding"
INCONCLUSIVE = "inconclusive at this budget"
PAIRWISE_COLUMNS = ["a", "b", "difference", "ci_low", "ci_high", "p", "p_adjusted", "n_seeds_a", "n_seeds_b",
                    "verdict", "reason", "bleu_a", "bleu_b", "seeds_bleu_a", "seeds_bleu_b", "rows", "clusters",
                    "family_size", "p_best_models_sentences", "best_models_difference", "command"]
Table = Callable[[list[str], list[list[str]]], str]


def _lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").split("\n")[:-1]
    except OSError:
        return None


def seed_runs(a: StudyAnalysis, regime: str) -> list[list[str]]:
    """The test translations of each of the regime's runs of its best configuration: the best trial's
    (test.hyp.txt) first, then each seed re-run's that best.json lists and whose file has every row."""
    folder = a.path / regime
    primary = _lines(folder / "test.hyp.txt")
    if primary is None:
        return []
    best = a.best[a.best["regime"] == regime] if "regime" in a.best else a.best
    listed = best["seeds"].iloc[0] if len(best) and "seeds" in best else None
    seeds = json.loads(listed) if isinstance(listed, str) else []
    runs = [primary]
    for entry in seeds[1:]:
        hyps = _lines(folder / f"test.hyp.seed{entry.get('seed')}.txt")
        if hyps is not None and len(hyps) == len(primary):
            runs.append(hyps)
    return runs


def _judge(r: dict, trains_a: bool, trains_b: bool, family: int) -> tuple[str, str]:
    """(verdict, reason) of one pair, `a` the higher regime."""
    reasons = [f"one seed of `{name}`, so the spread of training is not measured"
               for name, n, trains in ((r["a"], r["n_seeds_a"], trains_a), (r["b"], r["n_seeds_b"], trains_b))
               if trains and n < 2]
    if min(r["runs_a"]) <= max(r["runs_b"]) and (r["n_seeds_a"] > 1 or r["n_seeds_b"] > 1):
        reasons.append(f"seeds disagree (`{r['a']}` {min(r['runs_a']):.2f} to {max(r['runs_a']):.2f}, "
                       f"`{r['b']}` {min(r['runs_b']):.2f} to {max(r['runs_b']):.2f})")
    if r["ci_low"] <= 0 <= r["ci_high"]:
        reasons.append("the 95 % interval spans zero")
    if r["p_adjusted"] >= ALPHA:
        reasons.append(f"p = {r['p']:.3f} is {r['p_adjusted']:.3f} after Holm's correction over {family} "
                       f"comparison(s), not below {ALPHA}")
    blocking = [x for x in reasons if not x.startswith("seeds disagree")]
    return (INCONCLUSIVE, "; ".join(reasons)) if blocking else (FINDING, "; ".join(reasons))


def pairwise(a: StudyAnalysis, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Every pair of finished regimes scored on the same test rows: `a` (the higher mean test BLEU over its
    seed runs) minus `b`, from the two-level bootstrap (seeds and test sources), its Holm-adjusted p-value
    over all the pairs, the verdict and why; and the sentence-only p-value of the two best trials' outputs
    (`command` re-computes that one with the sacrebleu command line). Columns: PAIRWISE_COLUMNS."""
    c = a.comparison
    done = c[(c["state"] == "finished") & c["test_bleu"].notna()]
    refs = {r: _lines(a.path / r / "test.ref.txt") for r in done["regime"]}
    runs = {r: seed_runs(a, r) for r in done["regime"]}
    runs = {r: h for r, h in runs.items() if h and refs[r] is not None and len(h[0]) == len(refs[r])}
    # ordered as the seed table ranks them (best.json's mean over seeds), then by the best trial's, then files'
    recorded = {r: m if pd.notna(m) else t for r, m, t in
                zip(done["regime"], done.get("test_bleu_mean", done["test_bleu"]), done["test_bleu"])}
    mean = {r: sum(sacrebleu.corpus_bleu(x, [refs[r]]).score for x in h) / len(h) for r, h in runs.items()}
    first = dict(zip(done["regime"], done["test_bleu"]))
    regimes = sorted(runs, key=lambda r: (-recorded[r], -first[r], -mean[r]))
    rows = []
    for i, high in enumerate(regimes):
        for low in regimes[i + 1:]:
            if refs[high] != refs[low]:  # scored on different test rows: nothing to pair
                continue
            src_high, src_low = (_lines(a.path / r / "test.src.txt") for r in (high, low))
            # a study written before test.src.txt: every row its own cluster (the report says so)
            sources = src_high if src_high is not None and src_high == src_low else None
            r = seeded_bootstrap(refs[low], runs[high], runs[low], sources, resamples)
            best_only = seeded_bootstrap(refs[low], runs[high][:1], runs[low][:1], None, resamples)
            rows.append({"a": high, "b": low, **r, "p": r["p_value"], "p_best_models_sentences": best_only["p_value"],
                         "best_models_difference": best_only["difference"],
                         "command": f"sacrebleu {low}/test.ref.txt -i {low}/test.hyp.txt {high}/test.hyp.txt "
                                    f"--paired-bs --paired-bs-n {resamples}"})
    for r, adjusted in zip(rows, holm([r["p"] for r in rows])):
        r["p_adjusted"], r["family_size"] = adjusted, len(rows)
        r["verdict"], r["reason"] = _judge(r, a.trains(r["a"]), a.trains(r["b"]), len(rows))
        r["seeds_bleu_a"], r["seeds_bleu_b"] = (";".join(f"{x:.2f}" for x in r[k]) for k in ("runs_a", "runs_b"))
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS)


def write_pairwise(a: StudyAnalysis, pairs: pd.DataFrame) -> Path:
    """<study>/pairwise.csv: the table `pairwise` returns."""
    path = a.path / "pairwise.csv"
    write_text(path, pairs.to_csv(index=False))
    return path


def verdict(row) -> str:
    """One sentence on one pair: its difference, interval and adjusted p-value, and what is known."""
    numbers = (f"{row['difference']:+.2f} BLEU, mean over {row['n_seeds_a']} vs {row['n_seeds_b']} seed(s) "
               f"(95 % CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, p = {row['p']:.3f}, "
               f"Holm-adjusted {row['p_adjusted']:.3f} over {row['family_size']})")
    if row["verdict"] == FINDING:
        return (f"`{row['a']}` − `{row['b']}`: {numbers}: a finding, `{row['a']}` trains the better translator at "
                "this budget, across seeds and test sentences.")
    return f"`{row['a']}` − `{row['b']}`: {numbers}: {INCONCLUSIVE} ({row['reason']})."


def _pair(pairs: pd.DataFrame, x: str, y: str):
    hit = pairs[((pairs["a"] == x) & (pairs["b"] == y)) | ((pairs["a"] == y) & (pairs["b"] == x))]
    return hit.iloc[0] if len(hit) else None


def original_claims(pairs: pd.DataFrame) -> list[str]:
    """The original notebook's two claims (ORIGINAL.md: decoder ≈ full, 50.86 vs 53.88; scratch fails, 0.15),
    each answered with this study's test over seeds and sentences."""
    out = []
    p = _pair(pairs, "decoder", "full")
    if p is None:
        out.append("Claim \"training only the decoder is about as good as training everything\": needs finished "
                   "`decoder` and `full` regimes.")
    elif p["verdict"] != FINDING:
        out.append(f"Claim \"decoder ≈ full\" (original: 50.86 vs 53.88 BLEU): not contradicted here, though "
                   f"not shown either: {verdict(p)}")
    else:
        out.append(f"Claim \"decoder ≈ full\" (original: 50.86 vs 53.88 BLEU): not borne out here: {verdict(p)}")
    against = [q for q in (_pair(pairs, r, "scratch") for r in ("full", "decoder")) if q is not None]
    if not against:
        out.append("Claim \"training from scratch fails\": needs a finished `scratch` and a pretrained regime.")
    for q in against:
        other = q["a"] if q["b"] == "scratch" else q["b"]
        found = q["verdict"] == FINDING
        out.append(f"Claim \"scratch fails\" (original: 0.15 BLEU with one untuned lr), against `{other}`: "
                   + ("`scratch` is worse here, a finding, though tuned: " if found and q["b"] == "scratch" else
                      "`scratch` is not shown worse here: " if not found else
                      "`scratch` is *better* here, a finding: ") + verdict(q))
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
    try:
        check_sqlite(db)
    except StudyError as err:  # the report goes on without importances; the damaged file is left as it is
        print(f"warning: {err}; the report leaves out the hyperparameter importances", file=sys.stderr)
        return {regime: "skipped: optuna.db is damaged (not an SQLite database)"
                for regime in a.comparison["regime"] if a.trains(regime)}
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


def section(a: StudyAnalysis, table: Table, pairs: pd.DataFrame | None = None) -> list[str]:
    """The report's "How sure" section (Markdown lines); `table(header, rows)` draws its tables (the report's
    own `markdown_table`, passed in because the report imports this module); `pairs`: `pairwise(a)`, when
    the caller has it already (it wrote pairwise.csv from it)."""
    pairs = pairwise(a) if pairs is None else pairs
    budget = a.record.get("budget", {})
    lines = ["## How sure: seeds, test sources, references", "",
             f"Each regime's best configuration was trained with {budget.get('seeds', 1)} seed(s) (new "
             "initialisation and batch order; same data and upstream); mean ± sample sd over those runs:", "",
             seeds_markdown(a, table), "",
             "Multi-ref BLEU scores each distinct test source once against all its references (the test split's "
             "rows that share a source); test BLEU, which ranks the regimes as in the original notebook, scores "
             "each row against its one reference.", ""]
    if len(pairs):
        first = pairs.iloc[0]
        clustered = (f"{first['rows']} test rows resampled as {first['clusters']} sources (the rows of one English "
                     "source together)" if first["clusters"] < first["rows"] or (a.path / first["a"] / "test.src.txt")
                     .is_file() else f"{first['rows']} test rows, each resampled alone (this study wrote no "
                     "test.src.txt, so rows sharing a source could not be grouped)")
        lines += [f"Regime A against regime B: a two-level bootstrap ({RESAMPLES} resamples) that draws each "
                  f"regime's seed runs and the test sources with replacement; {clustered}. The difference is "
                  "between the regimes' mean BLEU over their seed runs. p-values are Holm-adjusted over the "
                  f"family of {len(pairs)} pairwise comparison(s) of this study; a difference is a finding only "
                  f"when the adjusted p is below {ALPHA}, its 95 % interval excludes zero and each trained regime "
                  "ran at least two seeds. The last column is the sentence-only bootstrap of the two best trials' "
                  "outputs (sacrebleu's `--paired-bs`): it says which of two fixed models scores higher on these "
                  "sentences, not which regime trains better. The table is also pairwise.csv.", "",
                  table(["a", "b", "BLEU a − b", "95 % CI", "p", f"p (Holm, {len(pairs)})", "seeds a/b",
                         "verdict", "p, best models' sentences only"],
                        [[f"`{r['a']}`", f"`{r['b']}`", f"{r['difference']:+.2f}",
                          f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}", f"{r['p']:.3f}", f"{r['p_adjusted']:.3f}",
                          f"{r['n_seeds_a']}/{r['n_seeds_b']}",
                          r["verdict"] + (f": {r['reason']}" if r["verdict"] != FINDING and r["reason"] else ""),
                          f"{r['p_best_models_sentences']:.3f}"] for _, r in pairs.iterrows()]),
                  "", *[f"- {verdict(r)}" for _, r in pairs.iterrows()], "",
                  f"Re-check a sentence-only p-value with sacrebleu: `{pairs['command'].iloc[0]}` (in the study "
                  "folder).", "",
                  "### The original notebook's claims", "", *[f"- {s}" for s in original_claims(pairs)], ""]
    else:
        lines += ["No two finished regimes share test translations yet: no paired comparison.", ""]
    lines += ["### Which hyperparameters mattered", "",
              *([f"- {s}" for s in importance_sentences(importances(a))] or ["- No trained regime."]), ""]
    return lines
