"""What a study's figures let it conclude, and how sure: each regime's test scores over seeds, the test of
"regime A beats regime B" between every two regimes, the original notebook's claims answered with it, and
which hyperparameters mattered (Optuna's fANOVA importances). Read from the study's files, like the rest
of the analysis (no Ray, no torch).

The test (`study.metrics.significance.seed_runs_test`) takes each regime's *fresh* seed runs as the unit
(`test.hyp.seed<N>.txt`: its best configuration trained again; the search's winner, `test.hyp.txt`, was picked
among trials on validation, so it is reported beside the test, not in it): the difference of the regimes' mean
test BLEU, Welch's t with the variance of the test sources added (the clustered, paired bootstrap of the
seed-averaged translations, the rows of one English source together from `test.src.txt`), a two-sided p,
Holm-adjusted over the study's family of pairwise comparisons. `study.analysis.verdicts.decide` calls each
pair a finding or "inconclusive at this budget", with the reasons and the smallest difference its seeds could
detect; docs/statistics.md gives the calibration. The sentence-only bootstrap of the two search winners'
outputs (what `sacrebleu --paired-bs` measures: two fixed models) stays as a secondary column. `pairwise.csv`
holds the table.
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
from study.analysis.verdicts import ALPHA, FINDING, INCONCLUSIVE, decide, scope, verdict
from study.common import check_sqlite, write_text
from study.config import StudyError
from study.metrics.significance import RESAMPLES, holm, seed_runs_test, seeded_bootstrap

__all__ = ["ALPHA", "FINDING", "INCONCLUSIVE", "PAIRWISE_COLUMNS", "pairwise", "seed_runs", "section", "verdict",
           "write_pairwise", "original_claims", "importances"]

# fANOVA fits a random forest of BLEU over the searched values: below this many trials it fits noise.
MIN_IMPORTANCE_TRIALS = 6
PAIRWISE_COLUMNS = ["a", "b", "difference", "ci_low", "ci_high", "p", "p_adjusted", "n_seeds_a", "n_seeds_b",
                    "verdict", "reason", "scope", "se", "df", "detectable", "sentence_se", "bleu_a", "bleu_b",
                    "seeds_bleu_a", "seeds_bleu_b", "winner_bleu_a", "winner_bleu_b", "best_models_difference",
                    "p_best_models_sentences", "seeds_diverged_a", "seeds_diverged_b", "seeds_missing_a",
                    "seeds_missing_b", "trains_a", "trains_b", "rows", "clusters", "family_size", "command"]
Table = Callable[[list[str], list[list[str]]], str]


def _lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").split("\n")[:-1]
    except OSError:
        return None


def _listed(best: pd.DataFrame, column: str) -> list:
    value = best[column].iloc[0] if len(best) and column in best else None
    return json.loads(value) if isinstance(value, str) else []


def seed_runs(a: StudyAnalysis, regime: str) -> dict:
    """A regime's scored runs of its best configuration: {"winner": the search winner's test translations
    (test.hyp.txt) or None, "fresh": each seed re-run's that best.json lists and whose file has every row,
    "missing": listed seed runs whose file is missing or short, "diverged": best.json's `seeds_diverged`
    (seed re-runs that diverged: never scored)}."""
    folder = a.path / regime
    primary = _lines(folder / "test.hyp.txt")
    best = a.best[a.best["regime"] == regime] if "regime" in a.best else a.best
    fresh, missing = [], 0
    for entry in _listed(best, "seeds")[1:]:
        hyps = _lines(folder / f"test.hyp.seed{entry.get('seed')}.txt")
        if hyps is not None and primary is not None and len(hyps) == len(primary):
            fresh.append(hyps)
        else:
            missing += 1
    return {"winner": primary, "fresh": fresh, "missing": missing, "diverged": len(_listed(best, "seeds_diverged"))}


def pairwise(a: StudyAnalysis, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Every pair of finished regimes scored on the same test rows: `a` (the higher mean test BLEU over the runs
    in the test, computed from the very translation files the test reads) minus `b`, the test over fresh seed
    runs, its Holm-adjusted p-value over the pairs it could test, the verdict, why, and the smallest difference
    detectable; beside it the search winners' difference and its sentence-only p (`command` re-computes that
    one with the sacrebleu command line). Columns: PAIRWISE_COLUMNS.

    The runs in the test: a trained regime's fresh seed runs (with none, its winner stands in for the point
    estimate and the pair is not tested); a regime that trains nothing, its one run (the same every seed)."""
    c = a.comparison
    done = c[(c["state"] == "finished") & c["test_bleu"].notna()]
    refs = {r: _lines(a.path / r / "test.ref.txt") for r in done["regime"]}
    found = {r: seed_runs(a, r) for r in done["regime"]}
    found = {r: x for r, x in found.items() if x["winner"] and refs[r] is not None and len(x["winner"]) == len(refs[r])}
    trains = {r: a.trains(r) for r in found}
    tested = {r: x["fresh"] if trains[r] and x["fresh"] else [x["winner"]] for r, x in found.items()}
    bleu = {r: [sacrebleu.corpus_bleu(h, [refs[r]]).score for h in runs] for r, runs in tested.items()}
    mean = {r: sum(v) / len(v) for r, v in bleu.items()}
    winner = {r: sacrebleu.corpus_bleu(x["winner"], [refs[r]]).score for r, x in found.items()}
    recorded = dict(zip(done["regime"], done.get("test_bleu_mean", done["test_bleu"])))
    # the label follows the files the test reads; ties by best.json's mean, then the winners'
    regimes = sorted(found, key=lambda r: (-mean[r], -(recorded.get(r) or 0), -winner[r], r))
    where = scope(a.record)
    rows = []
    for i, high in enumerate(regimes):
        for low in regimes[i + 1:]:
            if refs[high] != refs[low]:  # scored on different test rows: nothing to pair
                continue
            src_high, src_low = (_lines(a.path / r / "test.src.txt") for r in (high, low))
            # a study written before test.src.txt: every row its own cluster (the report says so)
            sources = src_high if src_high is not None and src_high == src_low else None
            r = seed_runs_test(refs[low], tested[high], tested[low], sources, resamples,
                               fixed_a=not trains[high], fixed_b=not trains[low], alpha=ALPHA)
            best_only = seeded_bootstrap(refs[low], [found[high]["winner"]], [found[low]["winner"]], None, resamples)
            rows.append({**r, "a": high, "b": low, "p": r["p_value"], "scope": where,
                         "n_seeds_a": len(found[high]["fresh"]) if trains[high] else 1,
                         "n_seeds_b": len(found[low]["fresh"]) if trains[low] else 1,
                         "sentence_se": math.sqrt(r["sentence_variance"]),
                         "winner_bleu_a": winner[high], "winner_bleu_b": winner[low],
                         "p_best_models_sentences": best_only["p_value"], "best_models_difference": best_only["difference"],
                         "seeds_diverged_a": found[high]["diverged"], "seeds_diverged_b": found[low]["diverged"],
                         "seeds_missing_a": found[high]["missing"], "seeds_missing_b": found[low]["missing"],
                         "trains_a": trains[high], "trains_b": trains[low],
                         "command": f"sacrebleu {low}/test.ref.txt -i {low}/test.hyp.txt {high}/test.hyp.txt "
                                    f"--paired-bs --paired-bs-n {resamples}"})
    family = [r for r in rows if r["testable"]]  # Holm over the pairs the seeds let it test
    for r, adjusted in zip(family, holm([r["p"] for r in family])):
        r["p_adjusted"] = adjusted
    for r in rows:
        r["family_size"] = len(family)
        r.setdefault("p_adjusted", math.nan)
        r |= decide(r, p_adjusted=r["p_adjusted"], family=len(family), a=r["a"], b=r["b"], trains_a=r["trains_a"],
                    trains_b=r["trains_b"], fresh_a=r["n_seeds_a"], fresh_b=r["n_seeds_b"],
                    runs_a=r["runs_a"] if r["trains_a"] else (), runs_b=r["runs_b"] if r["trains_b"] else (),
                    diverged_a=r["seeds_diverged_a"], diverged_b=r["seeds_diverged_b"],
                    missing_a=r["seeds_missing_a"], missing_b=r["seeds_missing_b"])
        r["seeds_bleu_a"], r["seeds_bleu_b"] = (";".join(f"{x:.2f}" for x in r[k]) for k in ("runs_a", "runs_b"))
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS)


def write_pairwise(a: StudyAnalysis, pairs: pd.DataFrame) -> Path:
    """<study>/pairwise.csv: the table `pairwise` returns."""
    path = a.path / "pairwise.csv"
    write_text(path, pairs.to_csv(index=False))
    return path


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


def _diverged_lines(a: StudyAnalysis) -> list[str]:
    """One line per regime with seed re-runs that diverged (best.json's `seeds_diverged`): never scored, never
    in the mean ± sd; the verdicts count them (`study.analysis.verdicts.decide`)."""
    out = []
    for regime in a.best.get("regime", []):
        gone = _listed(a.best[a.best["regime"] == regime], "seeds_diverged")
        if gone:
            out += [f"`{regime}`: {len(gone)} seed re-run(s) diverged (non-finite loss; seed(s) "
                    f"{', '.join(str(g.get('seed')) for g in gone)}, at epoch(s) "
                    f"{', '.join(str(g.get('epoch')) for g in gone)}); not scored and not in the mean ± sd above. A "
                    "verdict in its favour is inconclusive: its mean is over the runs that survived.", ""]
    return out


def _fmt(x, fmt: str) -> str:
    return "-" if x is None or pd.isna(x) else format(x, fmt)


def _interval(r) -> str:
    return "-" if pd.isna(r["ci_low"]) else f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}"


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
             seeds_markdown(a, table), "", *_diverged_lines(a),
             "Multi-ref BLEU scores each distinct test source once against all its references (the test split's "
             "rows that share a source); test BLEU, which ranks the regimes as in the original notebook, scores "
             "each row against its one reference.", ""]
    if len(pairs):
        first = pairs.iloc[0]
        clustered = (f"{first['rows']} test rows resampled as {first['clusters']} sources (the rows of one English "
                     "source together)" if first["clusters"] < first["rows"] or (a.path / first["a"] / "test.src.txt")
                     .is_file() else f"{first['rows']} test rows, each resampled alone (this study wrote no "
                     "test.src.txt, so rows sharing a source could not be grouped)")
        lines += ["Regime A against regime B: the unit is a seed run. The difference is between the regimes' mean "
                  "test BLEU over their *fresh* seed runs (the best configuration trained again; the search's "
                  "winner, picked among trials on validation, is left out and shown beside it), tested by Welch's "
                  "t with the variance of the test sources added (a paired bootstrap of the seed-averaged "
                  f"translations, {RESAMPLES} resamples; {clustered}), two-sided. p-values are Holm-adjusted over "
                  f"the family of {int(pairs['family_size'].iloc[0])} pairwise comparison(s) this study could test; "
                  f"a difference is a finding only when the adjusted p is below {ALPHA}, each trained regime has at "
                  "least two fresh seed runs, and none of the higher regime's diverged. \"Detectable\" is the "
                  "difference these seeds would find with 80 % power. Every verdict is about "
                  f"{pairs['scope'].iloc[0]}: another search, upstream or split can rank the regimes otherwise. "
                  "The last two columns are the search winners alone: their difference and the sentence-only "
                  "bootstrap of their outputs (sacrebleu's `--paired-bs`), which says which of two fixed models "
                  "scores higher on these sentences, not which regime trains better. docs/statistics.md gives the "
                  "test's calibration. The table is also pairwise.csv.", "",
                  table(["a", "b", "BLEU a − b (fresh seeds)", "95 % CI", "p", f"p (Holm, {int(pairs['family_size'].iloc[0])})",
                         "fresh seeds a/b", "detectable", "verdict", "winners a − b",
                         "p, winners' sentences only (sacrebleu --paired-bs)"],
                        [[f"`{r['a']}`", f"`{r['b']}`", f"{r['difference']:+.2f}",
                          _interval(r), _fmt(r["p"], ".3f"), _fmt(r["p_adjusted"], ".3f"),
                          f"{r['n_seeds_a']}/{r['n_seeds_b']}", _fmt(r["detectable"], ".2f"),
                          r["verdict"] + (f": {r['reason']}" if r["verdict"] != FINDING and r["reason"] else ""),
                          f"{r['best_models_difference']:+.2f}", f"{r['p_best_models_sentences']:.3f}"]
                         for _, r in pairs.iterrows()]),
                  "", *[f"- {verdict(r)}" for _, r in pairs.iterrows()], "",
                  f"Re-check a sentence-only p-value with sacrebleu: `{pairs['command'].iloc[0]}` (in the study "
                  "folder).", "",
                  "### The original notebook's claims", "", *[f"- {s}" for s in original_claims(pairs)], ""]
    else:
        lines += ["No two finished regimes share test translations yet: no paired comparison.", ""]
    lines += ["### Which hyperparameters mattered", "",
              *([f"- {s}" for s in importance_sentences(importances(a))] or ["- No trained regime."]), ""]
    return lines
