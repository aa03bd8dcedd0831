"""The search table read for the replay: its points, each epoch as a trial reports it, and the oracle.

A configuration is (learning rate, batch size). Beams change decoding, not training, so a trial scores each
checkpoint at every width the table recorded (greedy and 4 beams) and reports the better (`study.tuning.space`,
`beams: per_checkpoint`); `widths=(b,)` replays a trial that decodes with `b` beams alone (`beams: sampled`).

The oracle ranks configurations by **validation** BLEU alone: a configuration's quality is the mean over its seeds of
the best epoch's validation BLEU on the study's own validation subset (the figure a study selects by). Test BLEU is
carried along to be printed, never to choose: `quality(...)["test_mean"]` is read by nothing that ranks.
Between regimes, the oracle's best configurations are compared by Welch's t (its own degrees of freedom, the t
quantile, not 2 standard errors) and by an equivalence test: two regimes are "equivalent within ±margin" when the
90 % interval of their difference lies inside (−margin, +margin) (two one-sided tests at 5 %).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from study.config import StudyError
from study.metrics import student_t

WIDTHS = (1, 4)  # the widths the table scores every checkpoint at
EQUIVALENCE_MARGIN = 1.0  # BLEU: "level" means the 90 % interval of the difference inside ±this


def val_key(beams: int) -> str:
    return "val_bleu_greedy" if beams == 1 else f"val_bleu_beam{beams}"


class Table:
    """The search table, indexed: (regime, lr, batch) -> {seed: point record}."""

    def __init__(self, record: dict) -> None:
        self.record = record
        self.points: dict[tuple, dict[int, dict]] = defaultdict(dict)
        self.upstream: dict | None = None
        for p in record["points"]:
            if p["regime"] == "upstream":
                self.upstream = p["upstream"]
            else:
                self.points[(p["regime"], p["lr"], p["batch_size"])][p["seed"]] = p
        self.regimes = sorted({k[0] for k in self.points})
        self.epochs = record["config"]["epochs"]

    def snap(self, regime: str, lr: float, batch: int, rng=None) -> float:
        """The grid's learning rate nearest to `lr` in log (among those trained at `batch`: a table still being
        filled may lack some). A point halfway between two grid rates goes to either at random (`rng`), not always
        the lower: the table cannot say which side it is on."""
        grid = sorted(k[1] for k in self.points if k[0] == regime and k[2] == batch)
        if not grid:
            raise StudyError(f"the table has no {regime} point at batch size {batch}")
        distance = {g: round(abs(math.log(g) - math.log(lr)), 9) for g in grid}
        nearest = [g for g in grid if distance[g] == min(distance.values())]
        return rng.choice(nearest) if rng is not None and len(nearest) > 1 else nearest[0]

    def seeds(self, regime: str, lr: float, batch: int) -> list[int]:
        return sorted(self.points[(regime, lr, batch)])

    def configs(self, regime: str) -> list[tuple[float, int]]:
        return [(lr, b) for (r, lr, b) in self.points if r == regime]


def epoch_rows(point: dict, widths: tuple[int, ...] = WIDTHS) -> list[dict]:
    """A point's epochs as a trial scoring `widths` reports them: val_bleu the best width's (ties to fewer beams),
    `num_beams_best` that width, greedy BLEU and loss for the rungs, and the epoch's seconds (training, then one
    validation pass per width)."""
    rows = []
    for e in point["epochs"]:
        if e["diverged"] or any(val_key(w) not in e for w in widths):
            rows.append({"epoch": e["epoch"], "val_bleu": 0.0, "val_bleu_greedy": 0.0, "val_loss": float("nan"),
                         "diverged": True, "num_beams_best": widths[0], "seconds": e["epoch_time_s"]})
            break
        best = max(widths, key=lambda w: (e[val_key(w)], -w))
        seconds = e["train_seconds"] + sum(e["val_seconds_greedy" if w == 1 else "val_seconds_beam4"] for w in widths)
        rows.append({"epoch": e["epoch"], "val_bleu": e[val_key(best)], "val_bleu_greedy": e["val_bleu_greedy"],
                     "val_loss": e["val_loss_study"], "diverged": False, "num_beams_best": best, "seconds": seconds})
    return rows


def best_epoch(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["val_bleu"])


def test_bleu(point: dict, beams: int, epoch: int) -> float | None:
    entry = point.get("test", {}).get(f"b{beams}_e{epoch}")
    return entry["test_bleu"] if entry else None


def quality(table: Table, regime: str, lr: float, batch: int, widths: tuple[int, ...] = WIDTHS) -> dict:
    """A configuration over its seeds: each seed's best-epoch validation BLEU (mean, sd, n) — what ranks — and,
    to print only, the test BLEU of the checkpoint and width that validation chose."""
    vals, tests = [], []
    for seed in table.seeds(regime, lr, batch):
        point = table.points[(regime, lr, batch)][seed]
        best = best_epoch(epoch_rows(point, widths))
        vals.append(best["val_bleu"])
        tests.append(test_bleu(point, best["num_beams_best"], best["epoch"]) or 0.0)
    return {"val_mean": statistics.fmean(vals), "val_sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "seeds": len(vals), "val_runs": vals, "test_mean": statistics.fmean(tests),
            "test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0}


def welch(a: dict, b: dict, key: str) -> dict:
    """`a` − `b` on `key` ("val" or "test": their _mean, _sd over seeds): Welch's t with its degrees of freedom,
    the 95 % interval, whether it excludes zero, and whether the 90 % interval lies within ±EQUIVALENCE_MARGIN."""
    va, vb = a[f"{key}_sd"] ** 2 / a["seeds"], b[f"{key}_sd"] ** 2 / b["seeds"]
    diff = a[f"{key}_mean"] - b[f"{key}_mean"]
    se = math.sqrt(va + vb)
    # a regime that trains nothing (`fixed`: upstream) is one exact figure, no seed spread to estimate
    usable = all(x["seeds"] >= 2 or x.get("fixed") for x in (a, b))
    if se == 0 or not usable:
        return {"difference": diff, "df": None, "ci_low": None, "ci_high": None, "ordered": False,
                "equivalent": False}
    df = (va + vb) ** 2 / ((va ** 2 / (a["seeds"] - 1) if va else 0) + (vb ** 2 / (b["seeds"] - 1) if vb else 0))
    # never more degrees of freedom than the seed runs hold (Welch-Satterthwaite's approximation can exceed them)
    df = min(df, sum(x["seeds"] - 1 for x in (a, b) if not x.get("fixed")))
    low, high = student_t.interval(diff, se, df, 0.95)
    low90, high90 = student_t.interval(diff, se, df, 0.90)
    return {"difference": diff, "df": df, "ci_low": low, "ci_high": high, "ordered": low > 0 or high < 0,
            "equivalent": -EQUIVALENCE_MARGIN < low90 and high90 < EQUIVALENCE_MARGIN}


def oracle(table: Table, widths: tuple[int, ...] = WIDTHS, top: int = 3) -> dict:
    """Per regime: its `top` configurations by mean validation BLEU (the first is the oracle's), and between
    every two regimes' best, whether validation orders them or shows them level (Welch; test printed beside)."""
    out: dict[str, Any] = {}
    for regime in table.regimes:
        scored = {cfg: quality(table, regime, *cfg, widths) for cfg in table.configs(regime)}
        ranked = sorted(scored, key=lambda c: -scored[c]["val_mean"])
        out[regime] = {"lr": ranked[0][0], "batch_size": ranked[0][1], **scored[ranked[0]],
                       "configs": len(scored),
                       "top": [{"lr": c[0], "batch_size": c[1], **scored[c]} for c in ranked[:top]]}
    if table.upstream:
        val = table.upstream["validation"]
        beams = max(widths, key=lambda b: val[f"study_bleu_b{b}"])
        out["upstream"] = {"num_beams": beams, "val_mean": val[f"study_bleu_b{beams}"], "val_sd": 0.0,
                           "test_mean": table.upstream["test"][f"bleu_b{beams}"], "test_sd": 0.0, "seeds": 1,
                           "fixed": True}
    ranking = sorted(out, key=lambda r: -out[r]["val_mean"])
    pairs = []
    for i, a in enumerate(ranking):
        for b in ranking[i + 1:]:
            pairs.append({"a": a, "b": b, "validation": welch(out[a], out[b], "val"),
                          "test_printed_only": welch(out[a], out[b], "test")})
    return {"regimes": out, "ranking": ranking, "pairs": pairs}


def rung_signals(table: Table) -> dict:
    """Spearman correlation of each candidate rung metric at epochs 1 and 2 with the final epoch's greedy
    validation BLEU on the larger subset, over every (configuration, seed) of a regime."""
    import pandas as pd

    out: dict[str, dict] = {}
    for regime in table.regimes:
        rows = []
        for (r, _lr, _b), seeds in table.points.items():
            if r != regime:
                continue
            for point in seeds.values():
                e = point["epochs"]
                if len(e) < table.epochs or any(x["diverged"] for x in e):
                    continue
                row = {"final": e[-1]["larger_bleu_greedy"]}
                for k in range(min(2, table.epochs - 1)):
                    row[f"greedy_bleu_200_e{k + 1}"] = e[k]["val_bleu_greedy"]
                    row[f"greedy_bleu_larger_e{k + 1}"] = e[k]["larger_bleu_greedy"]
                    row[f"minus_val_loss_e{k + 1}"] = -e[k]["val_loss_study"]
                rows.append(row)
        frame = pd.DataFrame(rows)
        out[regime] = {c: float(frame[c].corr(frame["final"], method="spearman")) for c in frame if c != "final"}
        out[regime]["runs"] = len(frame)
    return out
