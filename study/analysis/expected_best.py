"""Expected best validation BLEU by number of trials: how the answer depends on the search budget.

Dodge et al. 2019 ("Show Your Work") plot each model's expected best validation score against the number of
hyperparameter trials: when two regimes' curves cross, "A beats B" depends on how many trials the search had.
This module draws that curve from a study's own trials (no Ray, no torch; numpy and pandas only).

A trial's score is its best epoch's validation BLEU (`best_val_bleu` of `StudyAnalysis.trials`). With the n
scores of a regime's search sorted ascending, v_(1) <= ... <= v_(n), the expected maximum of k of them drawn
*without* replacement is

    E[max of k] = sum_i v_(i) * C(i-1, k-1) / C(n, k),        k = 1 ... n

the unbiased estimator of Tang et al. 2020 (Dodge et al. draw with replacement, which is biased low for k
near n). k = 1 gives the mean of the scores, k = n their maximum, and the curve never falls as k grows. Ties
need no care: equal scores swap places in the sort without changing the sum. The band around it is a
bootstrap: the n trials resampled with replacement, the curve recomputed on each resample, its 2.5th and
97.5th percentiles at each k (seeded, so a report is the same every time it is written).

Which trials count, and what that makes the curve:
- every trial of the regime's search (seed re-runs of the best configuration are not draws of the search) that
  ended: finished, stopped early by ASHA, or diverged. A trial ASHA stopped early counts with the best
  validation BLEU it reached before it was stopped: had it run on it might have scored higher, so its score is
  a lower bound and the curve is conservative (it may understate what more trials would find). A diverged
  trial with no validation score counts as 0 BLEU, BLEU's floor: its draw produced no usable model. Errored
  trials (their run failed, not their hyperparameters) and trials still running or pending are left out.
- the estimator treats the n trials as exchangeable draws from one distribution, as random search makes them.
  A TPE search proposes later trials from earlier ones, so its curve reads the study's trials as if they had
  been drawn at random: what k trials *like these* give, not what a k-trial TPE search would have found.
- it says nothing beyond k = n: a curve still rising at n says more trials would probably still pay, not how
  much.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis.load import StudyAnalysis

COUNTED = ("finished", "pruned", "diverged")  # statuses of the search trials the curve is drawn from
RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
# Still rising at the budget: the last trial added at least this share of the curve's average gain per trial
# (a curve that has bent over adds less and less; a regime whose best sits on a narrow peak of the search space
# adds about as much with its n-th trial as with its second) and at least MIN_GAIN BLEU (gains below that are
# rounding in a report that shows BLEU to two decimals).
RISING_SHARE = 0.5
MIN_GAIN = 0.05
COLUMNS = ["regime", "trials", "expected_best", "low", "high", "n", "pruned"]


def weights(n: int) -> np.ndarray:
    """The (n, n) matrix W with W[k-1, i-1] = C(i-1, k-1) / C(n, k): W @ sorted scores = E[max of k], k = 1..n.

    Built from the top of each row down, without the binomials themselves (they overflow floats long before
    n = 1,000): W[k-1, n-1] = k/n, and W[k-1, i-2] = W[k-1, i-1] * (i-k) / (i-1), which reaches 0 at i = k."""
    if n < 1:
        return np.zeros((0, 0))
    k = np.arange(1, n + 1, dtype=float)[:, None]
    j = np.arange(2, n + 1, dtype=float)[None, :]  # i = 2..n: the factor taking column i-1 to column i-2
    factors = np.clip((j - k) / (j - 1), 0.0, None)
    down = np.cumprod(factors[:, ::-1], axis=1)[:, ::-1]  # column i-2: product of the factors for i..n
    return np.hstack([down, np.ones((n, 1))]) * (k / n)


def expected_max(scores, resamples: int = 0, seed: int = SEED, level: float = LEVEL):
    """E[max of k of `scores` drawn without replacement] for k = 1..n (n = len(scores)), as an array.

    With `resamples` > 0: (curve, low, high), low and high the bootstrap band's percentiles at each k (the
    scores resampled with replacement `resamples` times, the curve recomputed on each)."""
    v = np.sort(np.asarray(scores, dtype=float))
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ValueError("scores must be a flat list of finite numbers")
    w = weights(len(v))
    curve = w @ v
    if not resamples:
        return curve
    rng = np.random.default_rng(seed)
    drawn = np.sort(v[rng.integers(0, len(v), size=(resamples, len(v)))], axis=1)
    boot = drawn @ w.T
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(boot, [tail, 100 - tail], axis=0)
    return curve, low, high


def scores(a: StudyAnalysis) -> dict[str, pd.DataFrame]:
    """Regime -> the search trials its curve is drawn from (`score`: best validation BLEU, 0 for a diverged
    trial that has none), for every regime that trains, in the study's order; regimes with none are left out."""
    t = a.trials
    out = {}
    for regime in a.comparison["regime"]:
        if not a.trains(regime) or not len(t):
            continue
        own = t[(t["regime"] == regime) & t["status"].isin(COUNTED)]
        if "run" in own:
            own = own[own["run"] == "search"]
        score = pd.to_numeric(own["best_val_bleu"], errors="coerce").astype(float)
        score = score.where(score.notna() | (own["status"] != "diverged"), 0.0)
        own = own.assign(score=score)[score.notna()]
        if len(own):
            out[regime] = own
    return out


def curves(a: StudyAnalysis, resamples: int = RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """One row per regime and number of trials k = 1..n: `expected_best` with its band (`low`, `high`);
    `n`: the regime's counted trials, `pruned`: how many of them ASHA stopped early (their scores lower bounds)."""
    rows = []
    for regime, own in scores(a).items():
        curve, low, high = expected_max(own["score"], resamples=resamples, seed=seed)
        pruned = int((own["status"] == "pruned").sum())
        rows += [{"regime": regime, "trials": k + 1, "expected_best": curve[k], "low": low[k], "high": high[k],
                  "n": len(own), "pruned": pruned} for k in range(len(own))]
    return pd.DataFrame(rows, columns=COLUMNS)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def rising(c: pd.DataFrame) -> dict[str, str]:
    """Regime -> one sentence: whether its curve is still rising at its number of trials (the study's budget),
    from the gain of its n-th trial against its average gain per trial (RISING_SHARE, MIN_GAIN)."""
    out = {}
    for regime, g in c.groupby("regime", sort=False):
        y, n = g["expected_best"].to_numpy(), len(g)
        if n < 2:
            out[regime] = f"`{regime}` has one scored trial: no curve to read yet."
            continue
        last, mean_gain = y[-1] - y[-2], (y[-1] - y[0]) / (n - 1)
        if mean_gain <= 1e-9:  # every score equal (the weights sum to 1 only to rounding)
            out[regime] = (f"`{regime}` is flat: its {n} trials all scored {y[-1]:.2f} validation BLEU, so more "
                           f"trials like them would add nothing.")
            continue
        share = last / mean_gain
        said = (f"the {_ordinal(n)} trial added {last:.2f} to its expected best validation BLEU, {share:.2f}× its "
                f"average gain per trial (from {y[0]:.2f} with 1 trial to {y[-1]:.2f} with {n}, 95 % band "
                f"{g['low'].iloc[-1]:.2f}–{g['high'].iloc[-1]:.2f})")
        still = share >= RISING_SHARE and last >= MIN_GAIN
        out[regime] = (f"`{regime}` is still rising at {n} trials: {said}, so more trials would probably still "
                       "raise its best." if still else
                       f"`{regime}` has levelled off by {n} trials: {said}.")
        pruned = int(g["pruned"].iloc[0])
        if pruned:
            out[regime] += (f" {pruned} of its {n} trials, stopped early by ASHA, count{'s' * (pruned == 1)} with the best "
                            f"{'it' if pruned == 1 else 'they'} reached: "
                            "the curve is if anything low.")
    return out


def crossings(c: pd.DataFrame) -> list[str]:
    """One sentence per pair of regimes whose curves change order at some number of trials (compared over the k
    both reached): where, and who leads on each side; one sentence with their order when no pair crosses."""
    table = c.pivot(index="trials", columns="regime", values="expected_best")
    regimes = list(dict.fromkeys(c["regime"]))
    out = []
    for i, a in enumerate(regimes):
        for b in regimes[i + 1:]:
            d = (table[a] - table[b]).dropna()
            sign = np.sign(d.round(9))
            sign = sign[sign != 0]  # a tie is no order: the order changes across it
            changes = [int(k) for k, s0, s1 in zip(sign.index[1:], sign.iloc[:-1], sign.iloc[1:]) if s0 != s1]
            if not changes:
                continue
            first, last = (a if sign.iloc[0] > 0 else b), (a if sign.iloc[-1] > 0 else b)
            both = int(d.index.max())
            if len(changes) == 1:
                out.append(f"`{a}` and `{b}` cross at {changes[0]} trials: `{first}` is ahead with fewer, `{last}` "
                           f"from {changes[0]} on (up to the {both} both ran), so which of them wins depends on "
                           "the search budget.")
            else:
                out.append(f"`{a}` and `{b}` change order {len(changes)} times (at "
                           f"{', '.join(map(str, changes))} trials): `{first}` is ahead with 1 trial, `{last}` with "
                           f"{both}, so which of them wins depends on the search budget.")
    common = table.dropna()
    if not out and len(regimes) >= 2 and len(common):
        at = common.iloc[-1].sort_values(ascending=False)
        order = f"`{at.index[0]}`" + "".join(f" {'=' if round(at.iloc[j - 1] - at.iloc[j], 9) == 0 else '>'} "
                                            f"`{at.index[j]}`" for j in range(1, len(at)))
        out.append(f"No two curves cross: {order} at every number of trials from 1 to {int(common.index.max())}, "
                   "so their order does not depend on the search budget within it.")
    return out


def sentences(c: pd.DataFrame) -> list[str]:
    """Every regime's rising sentence, then where the curves cross."""
    return [*rising(c).values(), *crossings(c)] if len(c) else []


def _drawn(a: StudyAnalysis, c: pd.DataFrame) -> str:
    """What the estimator's exchangeable draws mean for the regimes' samplers (study.json's `samplers`)."""
    samplers = {r: a.record.get("samplers", {}).get(r, {}).get("sampler") for r in dict.fromkeys(c["regime"])}
    guided = [f"`{r}`" for r, s in samplers.items() if s not in ("random", None)]
    if not guided:
        return "The trials are read as random draws, " + (
            "as the study's random search made them." if any(samplers.values()) else "the estimator's assumption.")
    return (f"The trials are read as random draws, which {', '.join(guided)}'s are not (their sampler proposed "
            "later trials from earlier ones): the curve says what k trials like these give.")


def section(a: StudyAnalysis, plot: str | None = None, c: pd.DataFrame | None = None) -> list[str]:
    """The report's "Expected best by number of trials" section; `plot`: the plot's path relative to the report,
    if drawn; `c`: `curves(a)` if the caller has it."""
    c = curves(a) if c is None else c
    lines = ["## Expected best by number of trials", ""]
    if c.empty:
        return lines + ["No trained regime has a scored trial yet.", ""]
    lines += [f"The best validation BLEU each regime's search could expect from 1 … n of its own trials (Tang et al. "
              f"2020's unbiased estimator of Dodge et al. 2019's curve; 95 % bootstrap band over the trials, "
              f"{RESAMPLES} resamples). Each trial counts with its best epoch's score; a trial ASHA stopped early "
              "counts with the best it reached, a lower bound, so the curves are conservative. "
              + _drawn(a, c), ""]
    lines += [f"- {s}" for s in sentences(c)] + [""]
    return lines + ([f"The curves with their bands: [{plot}]({plot}) (under Plots).", ""] if plot else [])
