"""Calibration of the study's verdict rule by simulation: two regimes whose configurations are equally good
(the null) must be called different in at most 5 % of simulated studies (plus the simulation's own error), at
3, 5 and 10 fresh seed runs per regime; and the power against a true difference of 2 seed sd is stated.

The synthetic runs use the spread measured by benchmarks/calibration.py (docs/measurements/
calibration_scratch_quick_10seeds.json: `scratch`, quick preset, 10 seeds, test BLEU sd 1.43 over seeds) and a
sentence-sampling standard error of 0.4 BLEU for the difference of the seed-averaged translations (the
bootstrap's figure on that 1,000-row test split). Each simulated study draws each regime's fresh runs' BLEU
(seed sd 1.43) and a test-split effect on the difference (sd 0.4: the test sentences favour one configuration
by chance; the bootstrap's V is that variance), and calls `study.analysis.verdicts.from_summary`: the very
`seed_t_test` → `holm` → `decide` the study's pairwise.csv runs on translation files.

The harness is checked against the rule it replaced: the old two-level bootstrap (seed runs resampled with
replacement, sacrebleu's |d*| − mean|d*| p-value, the percentile interval), emulated on the same numbers with
the sentence resampling drawn as normal noise of the same variance, fails it at 3 seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.significance import _compute_p_value

from study.analysis.verdicts import ALPHA, FINDING, from_summary

MEASURED = Path(__file__).resolve().parents[1] / "docs" / "measurements" / "calibration_scratch_quick_10seeds.json"
SENTENCE_SE = 0.4
NULL_SIMS, POWER_SIMS = 3000, 600


def seed_sd() -> float:
    bleu = json.loads(MEASURED.read_text(encoding="utf-8"))["bleu"]
    return float(np.std(bleu, ddof=1))


def limit(sims: int) -> float:
    """5 % plus two Monte Carlo standard errors of a rate of 5 % estimated from `sims` studies."""
    return ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / sims)


def new_rule(runs_a: np.ndarray, runs_b: np.ndarray, rng: np.random.Generator) -> bool:
    return from_summary(runs_a.tolist(), runs_b.tolist(), SENTENCE_SE ** 2)["verdict"] == FINDING


def old_rule(runs_a: np.ndarray, runs_b: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> bool:
    """The rule before issue 43 (significance.seeded_bootstrap + conclusions._judge, one pair): each resample
    draws each regime's runs with replacement and the sentences (here: normal noise of variance V); a finding
    when sacrebleu's p < 0.05 and the 2.5–97.5 percentile interval excludes zero."""
    if runs_a.mean() < runs_b.mean():
        runs_a, runs_b = runs_b, runs_a
    n_a, n_b = len(runs_a), len(runs_b)
    draws = (runs_a[rng.integers(0, n_a, (resamples, n_a))].mean(1) - runs_b[rng.integers(0, n_b, (resamples, n_b))]
             .mean(1) + rng.normal(0, SENTENCE_SE, resamples))
    ordered, cut = np.sort(draws), resamples // 40
    centred = np.abs(draws) - np.abs(draws).mean()
    p = _compute_p_value(centred, abs(runs_a.mean() - runs_b.mean()))
    return p < ALPHA and not ordered[cut] <= 0 <= ordered[resamples - cut - 1]


def finding_rate(rule, n: int, sims: int, difference: float = 0.0, seed: int = 0) -> float:
    """How often `rule` calls a finding over `sims` simulated studies with `n` fresh runs per regime and a true
    difference of `difference` BLEU between the configurations."""
    sd, rng = seed_sd(), np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        runs_a = rng.normal(difference, sd, n) + rng.normal(0, SENTENCE_SE)  # the test split's draw, shared by A's runs
        runs_b = rng.normal(0.0, sd, n)
        hits += rule(runs_a, runs_b, rng)
    return hits / sims


def test_the_measured_spread_is_what_the_simulation_uses():
    assert seed_sd() == pytest.approx(1.43, abs=0.005)


# power against 2 seed sd at two-sided 0.05 (noncentral t, Welch df about 2(n − 1)): about 40 %, 74 %, 96 %
@pytest.mark.parametrize(("n", "least_power"), [(3, 0.30), (5, 0.62), (10, 0.90)])
def test_equal_configurations_are_called_different_at_most_5_percent(n, least_power):
    false = finding_rate(new_rule, n, NULL_SIMS, seed=n)
    assert false <= limit(NULL_SIMS), f"{n} seeds: {false:.1%} false findings"
    power = finding_rate(new_rule, n, POWER_SIMS, difference=2 * seed_sd(), seed=100 + n)
    assert power >= least_power, f"{n} seeds: power {power:.1%} against 2 sd"


def test_the_harness_catches_the_old_rule():
    """The same simulation fails the rule it replaced: at 3 seeds it calls about 16 % of equal pairs different."""
    false = finding_rate(old_rule, 3, 600, seed=3)
    assert false > limit(600) + 0.05, f"old rule: {false:.1%}"


def fixed_rule(runs_a: np.ndarray, runs_b: np.ndarray, rng: np.random.Generator) -> bool:
    """A trained regime's runs against a regime that trains nothing (`upstream`: one run, the same every seed)."""
    return from_summary(runs_a.tolist(), [0.0], SENTENCE_SE ** 2, fixed_b=True)["verdict"] == FINDING


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_a_trained_regime_equal_to_an_untrained_one_is_called_different_at_most_5_percent(n):
    assert finding_rate(fixed_rule, n, NULL_SIMS, seed=200 + n) <= limit(NULL_SIMS)


def test_two_fresh_runs_find_only_differences_many_seed_sds_wide():
    """The quick preset's 3 seeds leave 2 fresh runs per regime: a 2 sd difference is found about 1 time in 5 at
    a family of one, so the verdicts there are mostly inconclusive; a difference of 8 sd is found most times."""
    assert finding_rate(new_rule, 2, 600, difference=2 * seed_sd(), seed=7) < 0.35
    assert finding_rate(new_rule, 2, 600, difference=8 * seed_sd(), seed=8) > 0.6
    assert finding_rate(new_rule, 2, NULL_SIMS, seed=2) <= limit(NULL_SIMS)
