"""The study's question put to every regime that ran: which part of the model is worth training?

Each finished regime's test BLEU against what it trains (the best trial's trainable parameters) and what it
costs (the best trial's wall time, the median epoch). A regime is on the *frontier* when no regime with
fewer trainable parameters scored a higher test BLEU: training more than a frontier regime only paid if the
next frontier regime is the one that did. Regimes are read from the comparison table, never by name, so a
new registry entry gets its row here with no edit.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from study.analysis.load import StudyAnalysis
from study.common import format_duration

Table = Callable[[list[str], list[list[str]]], str]
COLUMNS = ["regime", "test_bleu", "test_bleu_sd", "trainable_params", "total_params", "share", "trial_wall_s",
           "epoch_s_median", "frontier"]


def worth_training(a: StudyAnalysis) -> pd.DataFrame:
    """One row per regime with a test score, best test BLEU first; `share` is trainable / total parameters
    (a regime that adds parameters, as LoRA's adapters, counts them in its total)."""
    c = a.comparison
    done = c[(c["state"] == "finished") & c["test_bleu"].notna()].copy()
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    done["test_bleu_sd"] = done["test_bleu_sd"] if "test_bleu_sd" in done else float("nan")
    done["trainable_params"] = done["trainable_params"].astype(float)
    done["share"] = done["trainable_params"] / done["total_params"].astype(float).where(done["total_params"] > 0)
    best_so_far, frontier = float("-inf"), {}
    # Fewest trainable parameters first; ties: the higher BLEU first, so an equal-cost loser is never on it.
    for i, row in done.sort_values(["trainable_params", "test_bleu"], ascending=[True, False]).iterrows():
        frontier[i] = row["test_bleu"] > best_so_far
        best_so_far = max(best_so_far, row["test_bleu"])
    done["frontier"] = pd.Series(frontier)
    # Equal BLEU: the regime that trains fewer parameters ranks first (it got there for less).
    return done.sort_values(["test_bleu", "trainable_params"], ascending=[False, True])[COLUMNS].reset_index(drop=True)


def _params(n: float) -> str:
    return "-" if pd.isna(n) else f"{n:,.0f}"


def section(a: StudyAnalysis, table: Table) -> list[str]:
    """The report's "Which part is worth training" section: the ranking table and what it says."""
    w = worth_training(a)
    lines = ["## Which part is worth training", ""]
    if w.empty:
        return lines + ["No regime has a test score yet.", ""]
    has_sd = w["test_bleu_sd"].notna().any()
    rows = [[str(k + 1), f"`{r.regime}`" + (" ◆" if r.frontier else ""),
             f"{r.test_bleu:.2f}" + (f" ± {r.test_bleu_sd:.2f}" if has_sd and pd.notna(r.test_bleu_sd) else ""),
             _params(r.trainable_params), "-" if pd.isna(r.share) else f"{100 * r.share:.3g} %",
             format_duration(r.trial_wall_s), format_duration(r.epoch_s_median)] for k, r in w.iterrows()]
    lines += ["Every regime that ran, by test BLEU" + (" (± sd over seeds)" if has_sd else "") + ", against the "
              "parameters it trains and the time its best trial took. ◆: on the frontier, no regime with fewer "
              "trainable parameters scored higher.", "",
              table(["rank", "regime", "test BLEU", "trainable params", "share of the model", "best trial wall",
                     "time per epoch (median)"], rows), ""]
    top, trained = w.iloc[0], w[w["trainable_params"] > 0]
    cheaper = w[w["frontier"] & (w["trainable_params"] < top["trainable_params"])]
    if len(w) >= 2:
        tied = w[w["test_bleu"] == top.test_bleu]
        s = (f"`{top.regime}` scored highest ({top.test_bleu:.2f} test BLEU) training {_params(top.trainable_params)} "
             "parameters." if len(tied) == 1 else
             f"{', '.join(f'`{r}`' for r in tied['regime'])} tie for the highest test BLEU ({top.test_bleu:.2f}); "
             f"`{top.regime}` trains the fewest parameters of them ({_params(top.trainable_params)}).")
        cheap = cheaper[cheaper["trainable_params"] > 0]
        if len(cheap):
            best_cheap = cheap.iloc[0]  # the highest-scoring cheaper frontier regime
            s += (f" The best that trained fewer, `{best_cheap.regime}`, reached {best_cheap.test_bleu:.2f} "
                  f"({best_cheap.test_bleu - top.test_bleu:+.2f}) with {_params(best_cheap.trainable_params)}, "
                  f"{100 * best_cheap.trainable_params / top.trainable_params:.3g} % of them.")
        elif len(trained) > 1 and top.trainable_params == trained["trainable_params"].min():
            s += " No regime that trained more parameters scored higher."
        lines += [s + " Whether two regimes' BLEU really differ: the paired bootstrap under \"How sure\".", ""]
    return lines
