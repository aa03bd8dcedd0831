"""Is one system's test BLEU really higher than another's? sacrebleu's paired bootstrap, and the same test
over training seeds too.

`paired_bootstrap` compares two fixed models' outputs on the same test sentences. Its p-value is sacrebleu's
own (`sacrebleu.significance.PairedTest`, test type "bs"), so that `sacrebleu REF -i HYP_A HYP_B --paired-bs`
on the same files prints the same one. sacrebleu reports no interval for the *difference*, only for each
system's mean, so the 95 % interval of B − A is read off the very resamples sacrebleu draws: the same seed
(SACREBLEU_SEED, 12345 by default, what the command line uses too), the same sentence indices, the same
sufficient statistics.

`seeded_bootstrap` asks what a reader means by "regime A beats regime B": it resamples each regime's seed
runs as well as the test sentences, and the sentences by English source (rows that share one share a
hypothesis, so they are not independent); with one run per regime and one row per source it is sacrebleu's
paired bootstrap exactly. With 2 or 3 seeds it is anti-conservative (docs/statistics.md): the study's verdicts
use `seed_t_test` instead, and `seeded_bootstrap` stays for benchmarks/calibration.py's old-against-new figures.

`seed_t_test` is the study's test of "regime A beats regime B": the seed runs are the unit. The difference of
the regimes' mean BLEU over their fresh seed runs, its variance s_A²/n_A + s_B²/n_B + V, where V is the
sentence-sampling variance of that difference (`sentence_variance`: the clustered, paired bootstrap of the
seed-averaged translations over test sources), Welch–Satterthwaite degrees of freedom, a two-sided p from
Student's t and the 95 % interval from its quantile. It takes summary numbers, so the calibration simulation
(tests/test_calibration_sim.py) calls exactly what the study calls; `seed_runs_test` feeds it from
translations. `detectable_difference` is the smallest difference such a test finds with given power.
`holm` adjusts a family of p-values. Only sacrebleu, numpy and scipy (`student_t`): the analysis uses this module
without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import sacrebleu
from sacrebleu.significance import PairedTest, _compute_p_value

from study.metrics import student_t

RESAMPLES = 1000  # sacrebleu's default for --paired-bs (--paired-bs-n)


def _bootstrap_indices(sentences: int, resamples: int) -> np.ndarray:
    """The resamples `sacrebleu.significance._paired_bs_test` draws: the same seed, the same call."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed) or None)
    return rng.choice(sentences, size=(resamples, sentences), replace=True)


def _resampled_bleu(bleu: sacrebleu.metrics.BLEU, hypotheses: list[str], references: list[list[str]],
                    idxs: np.ndarray) -> np.ndarray:
    # sacrebleu's private helpers, exactly as its paired bootstrap calls them: per-sentence n-gram counts,
    # summed per resample, turned into corpus BLEU.
    stats = np.array(bleu._extract_corpus_statistics(hypotheses, references), dtype="float32")
    return np.array([bleu._compute_score_from_stats(s.sum(0)).score for s in stats[idxs]])


def paired_bootstrap(references: list[str] | list[list[str]], baseline: list[str], system: list[str],
                     resamples: int = RESAMPLES) -> dict:
    """BLEU of `system` minus BLEU of `baseline` on the same test sentences: the difference, its 95 %
    bootstrap interval (2.5th to 97.5th percentile of the resampled differences), sacrebleu's paired
    bootstrap p-value and its signature. `references`: one reference per sentence, or reference streams."""
    if not len(baseline) == len(system) or not baseline:
        raise ValueError(f"paired test needs the same non-empty sentences: {len(baseline)} vs {len(system)}")
    streams = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    if any(len(stream) != len(baseline) for stream in streams):
        raise ValueError(f"{len(baseline)} hypotheses but reference streams of {[len(s) for s in streams]}")
    signatures, scores = PairedTest([("baseline", baseline), ("system", system)], {"BLEU": sacrebleu.metrics.BLEU()},
                                    references=streams, test_type="bs", n_samples=resamples)()
    base_result, sys_result = scores["BLEU"]
    idxs = _bootstrap_indices(len(baseline), resamples)
    bleu = sacrebleu.metrics.BLEU()
    resampled_system, resampled_baseline = (_resampled_bleu(bleu, h, streams, idxs) for h in (system, baseline))
    differences = np.sort(resampled_system - resampled_baseline)
    cut = resamples // 40  # the 2.5 % tails, as sacrebleu's own estimate_ci cuts them
    low, high = float(differences[cut]), float(differences[resamples - cut - 1])
    return {"bleu_baseline": base_result.score, "bleu_system": sys_result.score,
            "difference": sys_result.score - base_result.score, "ci_low": low, "ci_high": high,
            "p_value": float(sys_result.p_value), "significant": bool(low > 0 or high < 0),
            # sacrebleu prints these means too: equal means show the interval comes from its very resamples
            "mean_baseline": float(resampled_baseline.mean()), "mean_system": float(resampled_system.mean()),
            "resamples": resamples, "signature": str(signatures["BLEU"])}


# --- regime A against regime B: seeds and test sources resampled together ---------------------------------


def _clusters(sources: list[str] | None, rows: int) -> np.ndarray:
    """Each row's cluster: rows that share an English source share one (numbered in order of first
    appearance, so that with one row per source cluster k is row k, as sacrebleu indexes sentences)."""
    if sources is None:
        return np.arange(rows)
    if len(sources) != rows:
        raise ValueError(f"{rows} test rows but {len(sources)} sources")
    index: dict[str, int] = {}
    return np.array([index.setdefault(s, len(index)) for s in sources])


def _cluster_statistics(bleu: sacrebleu.metrics.BLEU, hypotheses: list[str], streams: list[list[str]],
                        groups: np.ndarray) -> tuple[float, np.ndarray]:
    """(corpus BLEU, each cluster's summed sufficient statistics). BLEU's statistics (n-gram matches and
    totals, lengths) add up over sentences, so a cluster's are its rows' sums and a resample's corpus BLEU is
    computed from summed clusters: sacrebleu's own trick, in its float32 as its paired bootstrap does."""
    raw = bleu._extract_corpus_statistics(hypotheses, streams)
    stats = np.array(raw, dtype="float32")
    summed = np.zeros((int(groups.max()) + 1, stats.shape[1]), dtype="float32")
    np.add.at(summed, groups, stats)
    return bleu._aggregate_and_compute(raw).score, summed


def _resampled_scores(bleu: sacrebleu.metrics.BLEU, stats: np.ndarray, idxs: np.ndarray, chunk: int = 100) -> list:
    # A chunk of resamples at a time: all 1,000 at once would hold resamples x clusters x 10 floats (0.6 GB
    # for a 16,000-source test split). Counts are whole numbers far below 2**24, so float32 sums are exact
    # in any order: the scores are those of sacrebleu's one big `stats[idxs]`.
    return [bleu._compute_score_from_stats(row).score for start in range(0, len(idxs), chunk)
            for row in stats[idxs[start:start + chunk]].sum(1)]


def _paired_rows(references, runs_a: list[list[str]], runs_b: list[list[str]]) -> tuple[list[list[str]], int]:
    """(reference streams, rows), checking that both regimes have runs and every run and stream has the same rows."""
    if not runs_a or not runs_b:
        raise ValueError("each regime needs at least one run")
    streams = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    rows = len(streams[0]) if streams else 0
    if not rows or any(len(h) != rows for h in (*runs_a, *runs_b)) or any(len(s) != rows for s in streams):
        raise ValueError(f"paired test needs every run on the same non-empty rows: references {rows}, runs "
                         f"{[len(h) for h in (*runs_a, *runs_b)]}")
    return streams, rows


def seeded_bootstrap(references: list[str] | list[list[str]], runs_a: list[list[str]], runs_b: list[list[str]],
                     sources: list[str] | None = None, resamples: int = RESAMPLES) -> dict:
    """Is regime A's test BLEU higher than regime B's, over training seeds *and* test sentences?

    `runs_a` / `runs_b`: each regime's seed runs' hypotheses, row for row with `references`; `sources`: each
    row's English source (rows sharing one are resampled together: they share a hypothesis), None for one
    row per source. The statistic is the mean corpus BLEU over a regime's seed runs, A minus B. Each of the
    `resamples` draws the test sources with replacement (one draw for both regimes: paired) and, apart, each
    regime's seed runs with replacement. The p-value is sacrebleu's paired-bootstrap one (the resampled
    |difference|, centred, against the observed one), and the sources are drawn exactly as sacrebleu draws
    sentences (same seed, same call, drawn first), so with one run per regime and one row per source this is
    `sacrebleu --paired-bs` to the digit. With n seeds the bootstrap's seed variance is (n − 1)/n of the
    sample's and its p-value is sacrebleu's |d*| − mean|d*| rule, one-sided in effect: with 2 to 5 seeds it
    calls far more than 5 % of equal regimes different (docs/statistics.md). The study uses `seed_t_test`."""
    streams, rows = _paired_rows(references, runs_a, runs_b)
    groups = _clusters(sources, rows)
    bleu = sacrebleu.metrics.BLEU()
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed) or None)
    clusters = int(groups.max()) + 1
    idxs = rng.choice(clusters, size=(resamples, clusters), replace=True)  # sacrebleu's draw, on clusters

    def per_run(runs: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        # observed corpus BLEU of each run, and each run's BLEU on every resample: (runs,) and (runs, resamples)
        scored = [_cluster_statistics(bleu, h, streams, groups) for h in runs]
        observed = np.array([score for score, _ in scored])
        resampled = np.array([_resampled_scores(bleu, s, idxs) for _, s in scored])
        return observed, resampled

    (observed_a, resampled_a), (observed_b, resampled_b) = per_run(runs_a), per_run(runs_b)

    def seed_means(resampled: np.ndarray) -> np.ndarray:
        # each resample's mean over len(runs) runs drawn with replacement: a weight per run (its draw count)
        n = len(resampled)
        counts = np.stack([np.bincount(row, minlength=n) for row in rng.integers(0, n, size=(resamples, n))])
        return (counts * resampled.T).sum(1) / n

    differences = seed_means(resampled_a) - seed_means(resampled_b)
    difference = float(observed_a.mean() - observed_b.mean())
    ordered = np.sort(differences)
    cut = resamples // 40  # the 2.5 % tails, as sacrebleu's estimate_ci cuts them
    centred = np.abs(differences) - np.abs(differences).mean()
    return {"difference": difference, "ci_low": float(ordered[cut]), "ci_high": float(ordered[resamples - cut - 1]),
            "p_value": float(_compute_p_value(centred, abs(difference))),
            "bleu_a": float(observed_a.mean()), "bleu_b": float(observed_b.mean()),
            "runs_a": observed_a.tolist(), "runs_b": observed_b.tolist(), "n_seeds_a": len(runs_a),
            "n_seeds_b": len(runs_b), "rows": rows, "clusters": clusters, "resamples": resamples}


# --- regime A against regime B over fresh seed runs: Welch's t with the sentences' variance added ------------


def _source_draws(groups: np.ndarray, resamples: int) -> np.ndarray:
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed) or None)
    clusters = int(groups.max()) + 1
    return rng.choice(clusters, size=(resamples, clusters), replace=True)  # sacrebleu's draw, on clusters


def sentence_variance(references: list[str] | list[list[str]], runs_a: list[list[str]], runs_b: list[list[str]],
                      sources: list[str] | None = None, resamples: int = RESAMPLES) -> dict:
    """Each run's corpus BLEU and V, the variance over test sources of mean BLEU(runs_a) − mean BLEU(runs_b).

    The test sources are drawn with replacement (the rows of one English source together; one draw for every
    run of both regimes: paired), each run's BLEU computed on the draw, averaged per regime; V is the sample
    variance of the `resamples` differences. Rows, runs and sources are checked as `seeded_bootstrap` does."""
    streams, rows = _paired_rows(references, runs_a, runs_b)
    groups = _clusters(sources, rows)
    bleu = sacrebleu.metrics.BLEU()
    idxs = _source_draws(groups, resamples)

    def per_run(runs: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        scored = [_cluster_statistics(bleu, h, streams, groups) for h in runs]
        return (np.array([score for score, _ in scored]),
                np.array([_resampled_scores(bleu, s, idxs) for _, s in scored]).mean(0))

    (observed_a, mean_a), (observed_b, mean_b) = per_run(runs_a), per_run(runs_b)
    return {"runs_a": observed_a.tolist(), "runs_b": observed_b.tolist(),
            "sentence_variance": float(np.var(mean_a - mean_b, ddof=1)) if resamples > 1 else 0.0,
            "rows": rows, "clusters": int(groups.max()) + 1, "resamples": resamples}


def _quantile(df: float, q: float) -> float:
    return student_t.quantile(q, df)


def detectable_difference(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at `alpha` with this standard error and degrees of
    freedom finds with probability `power`: (t_{1−α/2, df} + t_{power, df})·se (nan where se is)."""
    if not math.isfinite(se) or df <= 0:
        return math.nan
    return (_quantile(df, 1 - alpha / 2) + _quantile(df, power)) * se


def seed_t_test(mean_a: float, sd_a: float | None, n_a: int, mean_b: float, sd_b: float | None, n_b: int,
                sentence_var: float, *, sentence_df: float = math.inf, fixed_a: bool = False,
                fixed_b: bool = False, alpha: float = 0.05) -> dict:
    """Mean A − mean B over seed runs: Welch's t-test with the sentences' variance added.

    `mean_x`, `sd_x` (sample sd), `n_x`: a regime's fresh seed runs' test BLEU; `fixed_x`: the regime trains
    nothing (its one run is the same every seed: no seed variance). `sentence_var`: V (`sentence_variance`),
    with `sentence_df` degrees of freedom (clusters − 1). Variance s_A²/n_A + s_B²/n_B + V; degrees of freedom
    by Welch–Satterthwaite, at most the seed runs' own (n_A − 1) + (n_B − 1); a two-sided p from Student's t; the (1 − alpha) interval from its quantile. A
    trained regime with fewer than 2 runs has no measured spread: the test is not run (`testable` False,
    p and interval nan)."""
    terms, denominator = [], 0.0
    for sd, n, fixed in ((sd_a, n_a, fixed_a), (sd_b, n_b, fixed_b)):
        if n < 1:
            raise ValueError(f"a regime needs at least one run, got {n}")
        if fixed:
            terms.append(0.0)
        elif n < 2 or sd is None or not math.isfinite(sd):
            terms.append(math.nan)
        else:
            terms.append(sd * sd / n)
            denominator += terms[-1] ** 2 / (n - 1)
    if sentence_var < 0 or not math.isfinite(sentence_var):
        raise ValueError(f"the sentence variance must be finite and non-negative, got {sentence_var}")
    difference = float(mean_a - mean_b)
    out = {"difference": difference, "n_a": n_a, "n_b": n_b, "seed_variance_a": terms[0],
           "seed_variance_b": terms[1], "sentence_variance": float(sentence_var), "alpha": alpha}
    variance = terms[0] + terms[1] + sentence_var
    if math.isnan(variance):
        return {**out, "testable": False, "se": math.nan, "df": math.nan, "t": math.nan, "p_value": math.nan,
                "ci_low": math.nan, "ci_high": math.nan}
    if math.isfinite(sentence_df) and sentence_var > 0:
        denominator += sentence_var ** 2 / sentence_df
    se = math.sqrt(variance)
    df = variance ** 2 / denominator if denominator > 0 else math.inf
    # No more degrees of freedom than the seed runs hold: where the runs' sds happen to come out small, V would
    # otherwise dominate and send df towards infinity although the seed variance is as uncertain as ever (with
    # 2 runs a side, uncapped: 5.9 % false findings; capped: 2 %; docs/statistics.md).
    seed_df = sum(n - 1 for n, fixed in ((n_a, fixed_a), (n_b, fixed_b)) if not fixed)
    if seed_df:
        df = min(df, float(seed_df))
    if se == 0:  # two fixed models scored without sentence noise: the difference is what it is
        p = 1.0 if difference == 0 else 0.0
        return {**out, "testable": True, "se": 0.0, "df": df, "t": math.copysign(math.inf, difference) if difference
                else 0.0, "p_value": p, "ci_low": difference, "ci_high": difference}
    t = difference / se
    p = student_t.two_sided_p(t, df)
    half = _quantile(df, 1 - alpha / 2) * se
    return {**out, "testable": True, "se": se, "df": df, "t": t, "p_value": min(1.0, p),
            "ci_low": difference - half, "ci_high": difference + half}


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, sd


def seed_runs_test(references: list[str] | list[list[str]], runs_a: list[list[str]], runs_b: list[list[str]],
                   sources: list[str] | None = None, resamples: int = RESAMPLES, *, fixed_a: bool = False,
                   fixed_b: bool = False, alpha: float = 0.05) -> dict:
    """`seed_t_test` from translations: each run's corpus BLEU, V from `sentence_variance` over the same runs."""
    scored = sentence_variance(references, runs_a, runs_b, sources, resamples)
    (mean_a, sd_a), (mean_b, sd_b) = _mean_sd(scored["runs_a"]), _mean_sd(scored["runs_b"])
    return {**scored, "bleu_a": mean_a, "bleu_b": mean_b,
            **seed_t_test(mean_a, sd_a, len(runs_a), mean_b, sd_b, len(runs_b), scored["sentence_variance"],
                          sentence_df=scored["clusters"] - 1, fixed_a=fixed_a, fixed_b=fixed_b, alpha=alpha)}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (each compared with the test level as it is):
    the k-th smallest is multiplied by (m − k + 1), and adjusted values never decrease along that order."""
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
