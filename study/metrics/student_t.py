"""Student's t distribution, the one home of it in the project: its CDF, two-sided p-value, quantile and the t
interval of a mean, for tests with few units (a handful of studies, a handful of seed runs).

    from study.metrics.student_t import cdf, quantile, two_sided_p, interval
    quantile(0.975, 4)               # 2.7764...
    two_sided_p(2.0, 10)             # 0.0734...
    interval(mean, se, df)           # (low, high), the 95 % t interval

scipy.special's `stdtr` / `stdtrit` (Cephes) underneath; degrees of freedom may be fractional (Welch–Satterthwaite),
and infinite ones give the normal distribution.
"""

from __future__ import annotations

import math

from scipy import special


def _check_df(df: float) -> float:
    df = float(df)
    if not df > 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return df


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for T ~ t(df): the two-sided p-value of a t statistic."""
    df = _check_df(df)
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    tail = special.stdtr(df, -abs(t)) if math.isfinite(df) else special.ndtr(-abs(t))
    return min(1.0, float(2 * tail))


def cdf(t: float, df: float) -> float:
    """P(T <= t) for T ~ t(df)."""
    df = _check_df(df)
    return float(special.stdtr(df, t)) if math.isfinite(df) else float(special.ndtr(t))


def quantile(q: float, df: float) -> float:
    """The t such that P(T <= t) = q (t_{0.975, 4} = 2.7764...)."""
    df = _check_df(df)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie strictly between 0 and 1, got {q}")
    return float(special.stdtrit(df, q)) if math.isfinite(df) else float(special.ndtri(q))


def interval(mean: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """The two-sided `level` t interval of a mean: mean ± t_{(1+level)/2, df} · se."""
    half = quantile((1.0 + level) / 2.0, df) * se
    return mean - half, mean + half


def one_sample(values: list[float]) -> dict:
    """The one-sample t-test of mean zero over `values` (n >= 2): mean, sd, se, t, df, two-sided p and the 95 %
    interval. All values equal: sd 0, the interval a point, p 0 (or 1 when they are all zero)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a one-sample t-test needs at least two values, got {n}")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    se = sd / math.sqrt(n)
    df = n - 1
    if se == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return {"mean": mean, "sd": sd, "se": se, "t": t, "df": df, "p": 1.0 if mean == 0.0 else 0.0,
                "ci_low": mean, "ci_high": mean}
    t = mean / se
    low, high = interval(mean, se, df)
    return {"mean": mean, "sd": sd, "se": se, "t": t, "df": df, "p": two_sided_p(t, df), "ci_low": low,
            "ci_high": high}
