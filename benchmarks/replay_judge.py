"""How the replay judges its arms (`benchmarks/search_replay.py`): each arm's replays summarized on validation BLEU
(regret against the oracle, epochs, the oracle's best stopped early), held against the targets of issue 42, the
recommended design, and the printed report. Test BLEU is printed beside and chooses nothing."""

from __future__ import annotations

import statistics

from benchmarks import common
from benchmarks.replay_arms import CHOSEN
from benchmarks.replay_table import EQUIVALENCE_MARGIN

# The targets a design must meet (issue 42), all on validation BLEU: regret per regime, regret spread between
# regimes, the oracle's best stopped early, epochs against random search's.
TARGETS = {"regret_max": 0.5, "regret_spread": 0.5, "oracle_stopped_max": 0.05, "epochs_ratio": 0.75}


def summarize(arm: str, studies: list[dict], truth: dict, seconds: float) -> dict:
    """An arm over its replays: per regime the regret (the oracle's mean validation BLEU minus the found
    configuration's), epochs and how often the oracle's best was stopped early; test figures printed beside."""
    per_regime = {}
    for r in truth["regimes"]:
        if r == "upstream":
            continue
        found = [s["regimes"][r]["best"] for s in studies]
        regret = [truth["regimes"][r]["val_mean"] - b["quality_val"] for b in found]
        per_regime[r] = {"regret_mean": statistics.fmean(regret),
                         "within_1_bleu_share": statistics.fmean(x <= 1.0 for x in regret),
                         "found_val_mean": statistics.fmean(b["quality_val"] for b in found),
                         "found_test_mean_printed_only": statistics.fmean(b["quality_test_printed_only"] for b in found),
                         "epochs_mean": statistics.fmean(s["regimes"][r]["epochs"] for s in studies),
                         "oracle_best_stopped_share": statistics.fmean(s["oracle_stopped"][r] for s in studies)}
    regrets = [v["regret_mean"] for v in per_regime.values()]
    return {
        "arm": arm, "replays": len(studies), "chosen": arm == CHOSEN,
        "regret_max": max(regrets), "regret_spread": max(regrets) - min(regrets),
        "regret_mean": statistics.fmean(regrets),
        "epochs_mean": sum(v["epochs_mean"] for v in per_regime.values()),
        "oracle_best_stopped_max": max(v["oracle_best_stopped_share"] for v in per_regime.values()),
        "ordered_pairs_match_share": statistics.fmean(s["ordered_pairs_match"] for s in studies),
        "per_regime": per_regime, "seconds": seconds,
    }


def judge(arms: list[dict]) -> dict:
    """Each arm against the targets (validation figures only), and the recommended design: among the arms that
    meet every target the one with the fewest epochs; if none does, the one with the smallest worst regret."""
    random_epochs = next((a["epochs_mean"] for a in arms if a["arm"] == "random"), None)
    for a in arms:
        a["epochs_ratio"] = a["epochs_mean"] / random_epochs if random_epochs else None
        a["meets_targets"] = bool(random_epochs) and (
            a["regret_max"] <= TARGETS["regret_max"] and a["regret_spread"] <= TARGETS["regret_spread"]
            and a["oracle_best_stopped_max"] <= TARGETS["oracle_stopped_max"]
            and a["epochs_ratio"] <= TARGETS["epochs_ratio"])
    meeting = [a for a in arms if a["meets_targets"]]
    pick = min(meeting, key=lambda a: (a["epochs_mean"], a["arm"])) if meeting else \
        min(arms, key=lambda a: (a["regret_max"], a["epochs_mean"], a["arm"]))
    return {"recommended": pick["arm"], "meets_targets": pick["meets_targets"], "targets": TARGETS}


def print_report(record: dict) -> None:
    truth = record["oracle"]
    print("oracle (best mean validation BLEU over seeds, beams chosen per checkpoint; test printed, never chosen on):")
    print(common.format_table(["regime", "lr", "batch", "val", "val sd", "seeds", "test (printed)"],
                              [[r, f"{o['lr']:.3g}" if o.get("lr") else None, o.get("batch_size"), o["val_mean"],
                                o["val_sd"], o["seeds"], o["test_mean"]] for r, o in truth["regimes"].items()]))
    for p in truth["pairs"]:
        v = p["validation"]
        state = "ordered" if v["ordered"] else f"level within ±{EQUIVALENCE_MARGIN:g}" if v["equivalent"] else "neither"
        ci = f"{v['ci_low']:+.2f} to {v['ci_high']:+.2f}, df {v['df']:.1f}" if v["df"] else "no interval"
        print(f"  {p['a']} - {p['b']}: validation {v['difference']:+.2f} (95 % {ci}): {state}")
    print("\nrung signals (Spearman with the final greedy BLEU on the larger validation subset):")
    for regime, corr in record["rung_signals"].items():
        print(f"  {regime}: " + ", ".join(f"{k} {v:.2f}" for k, v in corr.items() if k != "runs")
              + f" ({corr['runs']} runs)")
    print()
    regimes = list(record["arms"][0]["per_regime"]) if record["arms"] else []
    print(common.format_table(
        ["arm", "replays", *[f"regret {r}" for r in regimes], "spread", "epochs", "x random", "oracle stopped",
         "targets"],
        [[a["arm"] + (" *" if a["chosen"] else ""), a["replays"],
          *[a["per_regime"][r]["regret_mean"] for r in regimes], a["regret_spread"], a["epochs_mean"],
          a["epochs_ratio"], a["oracle_best_stopped_max"], "met" if a["meets_targets"] else "-"]
         for a in record["arms"]]))
    print(f"\nrecommended on validation: {record['recommended']} "
          f"({'meets' if record['meets_targets'] else 'misses'} the targets); the quick preset runs {CHOSEN}")
