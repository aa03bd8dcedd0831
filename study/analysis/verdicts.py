"""When a difference between two regimes is "a finding", and the sentence that says so.

`decide` is the one rule: it takes a pair's `seed_t_test` (study.metrics.significance: the regimes' fresh seed
runs as the unit, Welch's t with the sentences' variance added, a two-sided p), the pair's Holm-adjusted
p-value and what is known of the runs (diverged, missing), and returns the verdict, why, and the smallest
difference the seeds could detect. The study's `pairwise` calls it from translation files; the calibration
simulation (tests/test_calibration_sim.py) calls it from summary numbers through `from_summary`: the same code
decides both. docs/statistics.md says why this test, with the simulation's figures.

A pair is **a finding** only when every trained regime of it has at least two fresh seed runs (the search's
winner, selected among trials on validation, is left out of the test and reported beside it), none of the
higher regime's fresh runs diverged (their survivors would flatter it), no scored run's translations are
missing, and the adjusted p is below ALPHA. Otherwise it is **inconclusive at this budget**, with the reasons.
`verdict` states the pair in one sentence that names what was held fixed: the configurations this search found,
with this study's upstream, test split and seeds.
"""

from __future__ import annotations

import math

from study.metrics.significance import detectable_difference, holm, seed_t_test

ALPHA = 0.05  # the family-wise error rate Holm's correction holds
POWER = 0.8  # the power at which `detectable` is stated
FINDING = "a finding"
INCONCLUSIVE = "inconclusive at this budget"
# What every verdict is about, when the study's own words are not known (`scope` gives them).
SCOPE = "the configurations this search found, with this study's upstream, test split and seeds"


def decide(test: dict, *, p_adjusted: float, family: int, a: str = "a", b: str = "b", trains_a: bool = True,
           trains_b: bool = True, fresh_a: int | None = None, fresh_b: int | None = None, runs_a=(), runs_b=(),
           diverged_a: int = 0, diverged_b: int = 0, missing_a: int = 0, missing_b: int = 0) -> dict:
    """{verdict, reason, detectable} of one pair, `a` the regime with the higher mean over its fresh runs.

    `test`: `seed_t_test`'s result (difference a − b, n_a, n_b, se, df, p_value); `p_adjusted`: its p after
    Holm over a family of `family` comparisons; `fresh_x`: the regime's fresh seed runs (default: the test's
    n; fewer than 2 for a trained regime and the pair is not tested); `runs_x`: the BLEU of each fresh run (for the note that the
    seeds' ranges overlap); `diverged_x`: fresh seed runs that diverged (not scored); `missing_x`: scored runs
    whose translations are missing. `detectable`: the difference these seeds find with POWER at two-sided
    ALPHA / family (the strictest level Holm applies in the family)."""
    if test["difference"] < 0:
        raise ValueError(f"`{a}` − `{b}` is {test['difference']:+.2f}: the pair's label must put the higher mean first")
    blocking, notes = [], []
    fresh_a, fresh_b = (test[k] if n is None else n for k, n in (("n_a", fresh_a), ("n_b", fresh_b)))
    for name, n, trains in ((a, fresh_a, trains_a), (b, fresh_b, trains_b)):
        if trains and n < 2:
            blocking.append(f"{n} fresh seed run(s) of `{name}` (the search's winner is left out of the test), "
                            "so the spread of training is not measured")
    for name, k in ((a, missing_a), (b, missing_b)):
        if k:
            blocking.append(f"best.json lists {k} scored seed run(s) of `{name}` whose test translations are missing")
    if diverged_a:
        blocking.append(f"{diverged_a} fresh seed run(s) of `{a}` diverged and are not scored: its mean is over the "
                        "runs that survived, which flatters it")
    if diverged_b:
        notes.append(f"{diverged_b} fresh seed run(s) of `{b}` diverged and are not scored (counted, they could "
                     f"only lower `{b}`)")
    if len(runs_a) > 1 and len(runs_b) > 1 and min(runs_a) <= max(runs_b):
        notes.append(f"seeds disagree (`{a}` {min(runs_a):.2f} to {max(runs_a):.2f}, `{b}` {min(runs_b):.2f} to "
                     f"{max(runs_b):.2f})")
    if test["testable"] and not p_adjusted < ALPHA:
        blocking.append(f"p = {test['p_value']:.3f} is {p_adjusted:.3f} after Holm's correction over {family} "
                        f"comparison(s), not below {ALPHA}")
    detectable = detectable_difference(test["se"], test["df"], ALPHA / max(family, 1), POWER)
    return {"verdict": INCONCLUSIVE if blocking else FINDING, "reason": "; ".join(blocking + notes),
            "detectable": detectable}


def from_summary(runs_a, runs_b, sentence_var: float, *, sentence_df: float = math.inf, fixed_b: bool = False) -> dict:
    """The study's rule on one pair (a family of one) from numbers alone: the fresh runs' BLEU of each regime
    and V; `fixed_b`: B trains nothing (its one run, no seed variance). Ordered as `pairwise` orders a pair (the
    higher mean first); returns `decide`'s result with the test."""
    fixed = [False, fixed_b]
    if sum(runs_b) / len(runs_b) > sum(runs_a) / len(runs_a):
        runs_a, runs_b, fixed = runs_b, runs_a, fixed[::-1]
    summary = []
    for runs in (runs_a, runs_b):
        mean = sum(runs) / len(runs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in runs) / (len(runs) - 1)) if len(runs) > 1 else None
        summary += [mean, sd, len(runs)]
    test = seed_t_test(*summary, sentence_var, sentence_df=sentence_df, fixed_a=fixed[0], fixed_b=fixed[1])
    adjusted = holm([test["p_value"]])[0] if test["testable"] else math.nan
    return {**test, **decide(test, p_adjusted=adjusted, family=1, trains_a=not fixed[0], trains_b=not fixed[1],
                             runs_a=runs_a if not fixed[0] else (), runs_b=runs_b if not fixed[1] else ())}


def scope(record: dict) -> str:
    """What a study's verdicts hold fixed, in words, from its study.json: one search's configurations, its
    upstream (the tiny one is pretrained per --seed), its split and its seeds."""
    config = record.get("config", {})
    model, seed = config.get("model"), config.get("seed")
    upstream = (f"the tiny upstream pretrained at --seed {seed}" if model == "tiny" and seed is not None
                else f"the upstream `{model}`" if model else "this study's upstream")
    split = (f"the test split drawn at data seed {config['data_seed']}" if config.get("data_seed") is not None
             else "this study's test split")
    return f"the configurations this search found, with {upstream} and {split}, over these seeds"


def _number(x, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _runs(row, side: str) -> str:
    n, trains = row[f"n_seeds_{side}"], row.get(f"trains_{side}", True)
    if trains is False or str(trains) == "False":
        return "its one run (it trains nothing)"
    return f"{n} fresh seed run(s)" if n else "no fresh seed run (its search winner alone)"


def verdict(row) -> str:
    """One sentence on one pair: its difference over fresh seed runs, interval, p (raw and Holm), the smallest
    difference its seeds could detect, the search winners' difference beside it, what it holds fixed, and the
    verdict with its reasons."""
    where = row.get("scope") if isinstance(row.get("scope"), str) else SCOPE
    numbers = (f"{row['difference']:+.2f} BLEU, mean of `{row['a']}`'s {_runs(row, 'a')} against `{row['b']}`'s "
               f"{_runs(row, 'b')} (95 % CI {_number(row['ci_low'], '+.2f')} to {_number(row['ci_high'], '+.2f')}, "
               f"t-test with {_number(row['df'], '.1f')} df: p = {_number(row['p'], '.3f')}, Holm-adjusted "
               f"{_number(row['p_adjusted'], '.3f')} over {row['family_size']}; these seeds could detect about "
               f"{_number(row['detectable'], '.2f')} BLEU; the search's winners alone: "
               f"{_number(row['best_models_difference'], '+.2f')})")
    if row["verdict"] == FINDING:
        note = f" ({row['reason']})" if isinstance(row.get("reason"), str) and row["reason"] else ""
        return (f"`{row['a']}` − `{row['b']}`: {numbers}: a finding about {where}: the configuration found for "
                f"`{row['a']}` scores higher test BLEU than the one found for `{row['b']}`{note}.")
    return f"`{row['a']}` − `{row['b']}`: {numbers}: {INCONCLUSIVE} about {where} ({row['reason']})."
