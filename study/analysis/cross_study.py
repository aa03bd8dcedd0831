"""The claim about the regimes: regime A against regime B over several studies, the studies as the unit.

    python -m study.analyze results/q-seed0 results/q-seed1 results/q-seed2 ...   # cross_study_pairwise.csv

    from study.analysis.cross_study import pairwise_across
    table = pairwise_across(labels, analyses)   # one row per pair of regimes

One study's verdict (`study.analysis.conclusions`, its pairwise.csv) is about the configurations its search
found, with its upstream, over its seed runs. Studies at different `--seed` each run their own search, tiny
upstream and seed runs, so the spread between them is what a claim about the *regimes* must beat. Per pair of
regimes, each study that finished both gives one difference d_i = (regime a's mean test BLEU over its seed
runs, best.json's `test_bleu_mean`) − (regime b's); the d_i are paired within a study and tested with a
one-sample t-test (n_studies − 1 degrees of freedom, two-sided p, the t quantile's 95 % interval;
`study.metrics.student_t`), the p-values Holm-adjusted over the pairs. `a` is the regime with the higher mean
over those studies. A difference is "a finding" only when the adjusted p is below ALPHA, the interval excludes
zero and at least MIN_STUDIES studies finished both regimes; otherwise "inconclusive at this budget", with why.
Each study's own verdict for the same pair (its pairwise.csv) is shown beside it in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

import pandas as pd

from study.analysis.conclusions import FINDING, INCONCLUSIVE
from study.analysis.load import StudyAnalysis
from study.config import StudyError
from study.metrics.significance import holm
from study.metrics.student_t import one_sample

ALPHA = 0.05  # the family-wise error rate Holm's correction holds (as within a study)
MIN_STUDIES = 3  # below this a t interval over studies is too wide to mean much, and 2 studies give 1 df
COLUMNS = ["a", "b", "difference", "ci_low", "ci_high", "p", "p_adjusted", "n_studies", "verdict", "reason"]
FILE = "cross_study_pairwise.csv"
Table = Callable[[list[str], list[list[str]]], str]


def study_means(labels: Sequence[str], analyses: Sequence[StudyAnalysis]) -> pd.DataFrame:
    """One row per (study, regime) with a test score: the mean test BLEU over the regime's seed runs
    (best.json's `test_bleu_mean`; its `test_bleu` in a study recorded before --seeds, one run)."""
    rows = []
    for label, a in zip(labels, analyses):
        for _, r in a.best.iterrows():
            mean = r.get("test_bleu_mean")
            value = mean if mean is not None and pd.notna(mean) else r.get("test_bleu")
            if value is not None and pd.notna(value):
                rows.append({"study": label, "regime": r["regime"], "test_bleu_mean": float(value)})
    return pd.DataFrame(rows, columns=["study", "regime", "test_bleu_mean"])


def _reason(row: dict, higher: int, family: int) -> str:
    a, b, n = f"`{row['a']}`", f"`{row['b']}`", row["n_studies"]
    if n < 2:
        return (f"{n} study finished both {a} and {b}: a test over studies needs at least 2 "
                f"(a finding needs {MIN_STUDIES})")
    reasons = []
    if n < MIN_STUDIES:
        reasons.append(f"only {n} studies finished both (a finding needs {MIN_STUDIES})")
    if higher < n:
        reasons.append(f"the order flips between studies: {a} higher in {higher} of {n}")
    if row["ci_low"] <= 0 <= row["ci_high"]:
        reasons.append("the 95 % interval spans zero")
    if not row["p_adjusted"] < ALPHA:
        reasons.append(f"p = {row['p']:.3f} is {row['p_adjusted']:.3f} after Holm's correction over {family} "
                       f"pair(s), not below {ALPHA}")
    if reasons:
        return "; ".join(reasons)
    return (f"{a} higher in {higher} of {n} studies; p (Holm, {family}) = {row['p_adjusted']:.3g} < {ALPHA} and "
            f"the 95 % interval excludes zero")


def pairwise_across(labels: Sequence[str], analyses: Sequence[StudyAnalysis]) -> pd.DataFrame:
    """One row per pair of regimes finished in any study, columns COLUMNS (plus `per_study`: study -> d_i,
    dropped when written). StudyError when the sign of a difference disagrees with its label (a bug, not data)."""
    means = study_means(labels, analyses)
    wide = means.pivot(index="study", columns="regime", values="test_bleu_mean") if len(means) else pd.DataFrame()
    order = list(dict.fromkeys(r for a in analyses for r in [*a.record.get("regimes", []), *a.best.get("regime", [])]
                               if r in wide.columns))
    rows = []
    for x, y in combinations(order, 2):
        both = wide[[x, y]].dropna()
        mx, my = (both[x].mean(), both[y].mean()) if len(both) else (math.nan, math.nan)
        a, b = (x, y) if not my > mx else (y, x)  # `a`: the higher mean over the studies that finished both
        d = (both[a] - both[b]) if len(both) else pd.Series(dtype=float)
        row = {"a": a, "b": b, "difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan,
               "p_adjusted": math.nan, "n_studies": len(d), "per_study": dict(d.items())}
        if len(d) >= 2:
            test = one_sample([float(v) for v in d])
            row |= {"difference": test["mean"], "ci_low": test["ci_low"], "ci_high": test["ci_high"], "p": test["p"]}
            if test["mean"] < 0 or not math.isclose(test["mean"], both[a].mean() - both[b].mean(), abs_tol=1e-9):
                raise StudyError(f"`{a}` − `{b}` over studies is {test['mean']:+.3f} but `{a}` is labelled the "
                                 f"higher regime; this is a bug in the cross-study analysis, please report it")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "per_study"])
    tested = frame["p"].notna()
    family = int(tested.sum())
    if family:
        frame.loc[tested, "p_adjusted"] = holm(frame.loc[tested, "p"].tolist())
    verdicts, reasons = [], []
    for row in frame.to_dict("records"):
        finding = (row["n_studies"] >= MIN_STUDIES and row["p_adjusted"] < ALPHA
                   and not row["ci_low"] <= 0 <= row["ci_high"])
        verdicts.append(FINDING if finding else INCONCLUSIVE)
        reasons.append(_reason(row, sum(v > 0 for v in row["per_study"].values()), family))
    return frame.assign(verdict=pd.Series(verdicts, index=frame.index, dtype=object),
                        reason=pd.Series(reasons, index=frame.index, dtype=object))


def write(frame: pd.DataFrame, out: Path) -> Path:
    """cross_study_pairwise.csv in `out` (the columns COLUMNS exactly); returns its path."""
    from study.common import write_text

    path = out / FILE
    write_text(path, frame[COLUMNS].to_csv(index=False))
    return path


# --- each study's own verdict, and the report's section -------------------------------------------------------

def own_verdicts(labels: Sequence[str], analyses: Sequence[StudyAnalysis]) -> dict[str, pd.DataFrame | None]:
    """Each study's pairwise.csv (its own test over its seed runs), or None where it has none (a study analysed
    before pairwise.csv existed, or never analysed)."""
    found: dict[str, pd.DataFrame | None] = {}
    for label, a in zip(labels, analyses):
        try:
            own = pd.read_csv(a.path / "pairwise.csv")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            own = None
        found[label] = own if own is not None and {"a", "b", "verdict", "difference"} <= set(own.columns) else None
    return found


def _own(own: pd.DataFrame | None, a: str, b: str) -> tuple[float, str] | str:
    """One study's own (difference, verdict) on `a` − `b`, its difference turned to that orientation, or why
    there is none."""
    if own is None:
        return "no pairwise.csv"
    for sign, (x, y) in ((1, (a, b)), (-1, (b, a))):
        hit = own[(own["a"] == x) & (own["b"] == y)]
        if len(hit):
            return sign * float(hit["difference"].iloc[0]), str(hit["verdict"].iloc[0])
    return "pair not in its pairwise.csv"


def _own_text(found: tuple[float, str] | str) -> str:
    return found if isinstance(found, str) else f"{found[0]:+.2f}, {found[1]}"


def _seeds(analyses: Sequence[StudyAnalysis]) -> tuple[str, str]:
    """(the studies' seeds, what they share of the split) for the report's sentences."""
    seeds = [a.record.get("seed", a.record.get("config", {}).get("seed", "?")) for a in analyses]
    split = {str(a.record.get("config", {}).get("data_seed", "?")) for a in analyses}
    held = (f"the same split (data_seed {split.pop()})" if len(split) == 1
            else f"different splits (data_seed {', '.join(sorted(split))})")
    text = ", ".join(map(str, seeds))
    if len(set(map(str, seeds))) < len(seeds):  # a repeated --seed repeats its upstream: not independent studies
        text += " (a seed repeated: those studies share their upstream)"
    return text, held


def section(labels: Sequence[str], analyses: Sequence[StudyAnalysis], frame: pd.DataFrame, table: Table) -> list[str]:
    """The report's section: the table over studies, each study's own verdict beside it, one sentence per pair."""
    seeds, held = _seeds(analyses)
    n = len(labels)
    holds = (f"over {n} studies at seeds {seeds}, each with its own search, upstream and seed runs, on {held}")
    family = int(frame["p"].notna().sum())
    lines = ["## Regime A against regime B across studies", "",
             f"Per pair of regimes, {holds}: each study's difference of the two regimes' mean test BLEU over its "
             f"seed runs (best.json's mean), the studies as the unit (a one-sample t-test over the studies that "
             f"finished both, n_studies − 1 degrees of freedom, two-sided), Holm-adjusted over the {family} "
             f"pair(s) tested. It is {FINDING} only when the adjusted p is below {ALPHA}, the 95 % interval "
             f"excludes zero and at least {MIN_STUDIES} studies finished both regimes; otherwise "
             f"{INCONCLUSIVE}. `{FILE}` holds the table.", ""]
    if frame.empty:
        return lines + [f"No pair of regimes to compare {holds}: no two regimes have a test score.", ""]

    def fmt(v, spec: str = "+.2f") -> str:
        return "-" if v is None or pd.isna(v) else f"{v:{spec}}"

    rows = [[f"`{r.a}` − `{r.b}`", fmt(r.difference), f"{fmt(r.ci_low)} to {fmt(r.ci_high)}", fmt(r.p, ".3f"),
             fmt(r.p_adjusted, ".3f"), str(r.n_studies), r.verdict] for r in frame.itertuples()]
    lines += [table(["a − b", "difference (BLEU)", "95 % CI", "p", f"p (Holm, {family})", "studies", "verdict"],
                    rows), ""]
    own = own_verdicts(labels, analyses)
    missing = [s for s, v in own.items() if v is None]
    lines += [f"Beside it, each study's difference of its per-study means (d_i) and its own verdict on the same "
              f"pair (its pairwise.csv: the configurations that study's search found, its upstream, its seed "
              f"runs), {holds}:", ""]
    rows = [[f"`{r.a}` − `{r.b}`", *[(f"{r.per_study[s]:+.2f} / " if s in r.per_study else "not both / ")
                                     + _own_text(_own(own[s], r.a, r.b)) for s in labels]] for r in frame.itertuples()]
    lines += [table(["a − b", *[f"{s}: d_i / own verdict" for s in labels]], rows), ""]
    if missing:
        lines += [f"{', '.join(missing)}: no pairwise.csv (analysed before it existed, or never analysed; "
                  f"`python -m study.analyze <study>` writes it), so that study's own verdict is not shown.", ""]
    for r in frame.itertuples():
        what = (f"- `{r.a}` − `{r.b}`, {holds}: {fmt(r.difference)} BLEU over {r.n_studies} of them "
                f"(95 % CI {fmt(r.ci_low)} to {fmt(r.ci_high)}, p = {fmt(r.p, '.3f')}, Holm-adjusted "
                f"{fmt(r.p_adjusted, '.3f')} over {family}): {r.verdict}")
        verdicts = [v for v in (_own(own[s], r.a, r.b) for s in labels) if not isinstance(v, str)]
        for_a = sum(v == FINDING and d > 0 for d, v in verdicts)
        for_b = sum(v == FINDING and d < 0 for d, v in verdicts)
        own_text = (f"The studies' own verdicts on this pair: `{r.a}` higher, {FINDING}, in {for_a}; `{r.b}` "
                    f"higher, {FINDING}, in {for_b}; of {len(verdicts)} with the pair in a pairwise.csv."
                    if verdicts else "No study's own verdict on this pair is at hand.")
        lines.append(what + (f", `{r.a}` scores higher than `{r.b}` across such studies" if r.verdict == FINDING
                             else f": {r.reason}") + ". " + own_text)
    return lines + [""]
