"""The search designs the replay compares (`benchmarks/search_replay.py`): each arm is a sampler x an early-stopping
rule x a start (x options), named `<sampler>[+<scheduler>][+<start>][+wide][+sampled]`, and built here into the
project's own searcher and scheduler exactly as the study builds them (`study.tuning.searcher`)."""

from __future__ import annotations

import dataclasses
import math

from study.config import StudyError

# Early-stopping rules: the search space's `asha` section each arm runs with (None: no early stopping).
SCHEDULERS: dict[str, dict | None] = {
    "none": None,
    "asha": {"grace_period": 1, "reduction_factor": 2},  # greedy BLEU from epoch 1
    "asha_loss": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss"},
    "asha_loss_patient2": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss", "min_results": 2},
    "asha_loss_patient": {"grace_period": 1, "reduction_factor": 2, "rung_metric": "val_loss", "min_results": 3},
    "asha_grace2": {"grace_period": 2, "reduction_factor": 2, "rung_metric": "val_loss", "min_results": 2},
}
SAMPLERS = ("random", "tpe", "gp")
# How a search starts. "warm": the T5 paper's fine-tuning point (lr 1e-3, batch 16, 4 beams), run first — the
# previous design, the oracle's best for full and scratch and not for decoder (issue 42). "ladder": one rule for
# every regime, read off its search space alone: learning rates splitting the space's range evenly in log ("ladder":
# 3, its quartiles; "ladder5": 5, 2.15e-4 .. 4.64e-3 for 1e-4..1e-2) at its smallest batch size (the most steps).
STARTS = ("none", "warm", "ladder", "ladder4", "ladder5")
WARM_POINTS = [{"lr": 1e-3, "batch_size": 16, "num_beams": 4}]
# Options: "wide", TPE's random start at half the trials instead of a quarter; "sampled", num_beams proposed by
# the sampler and a model trained per width (the design before beams were scored per checkpoint).
OPTIONS = ("wide", "sampled")
CHOSEN = "tpe+asha_loss_patient2+ladder5"  # the quick preset's search (search_spaces/{scratch,decoder,full}.yaml)
# The targets a design must meet (issue 42), all on validation BLEU: regret per regime, regret spread between
GP_SCHEDULERS = ("none", "asha_loss_patient2")  # GP fits at every proposal (~1 s): its arms are these few



def arm_names() -> list[str]:
    names = ["random", "random+none+sampled", "random+none+ladder"]
    for sampler in ("random", "tpe"):
        for scheduler in SCHEDULERS:
            if (sampler, scheduler) == ("random", "none"):
                continue
            for start in STARTS:
                names.append(f"{sampler}+{scheduler}" + ("" if start == "none" else f"+{start}"))
    names += [f"{sampler}+none+ladder{k}" for sampler in ("random", "tpe") for k in (4, 5)]
    names += [f"tpe+{s}+ladder+wide" for s in ("none", "asha_loss_patient2")]
    names += ["tpe+asha_loss_patient2+warm+sampled", "tpe+asha_loss_patient2+ladder5+sampled"]
    names += [f"gp+{s}+ladder5" for s in GP_SCHEDULERS]
    return list(dict.fromkeys(names))


def parse_arm(name: str) -> dict:
    """arm name -> {sampler, scheduler, start, wide, sampled}: `<sampler>[+<scheduler>][+<start>][+wide][+sampled]`."""
    parts = name.split("+")
    arm = {"sampler": parts[0], "scheduler": "none", "start": "none", "wide": False, "sampled": False}
    for part in parts[1:]:
        if part in SCHEDULERS:
            arm["scheduler"] = part
        elif part in STARTS:
            arm["start"] = part
        elif part in OPTIONS:
            arm[part] = True
        else:
            raise StudyError(f"unknown arm {name!r}: {part!r} is no scheduler ({', '.join(SCHEDULERS)}), start "
                             f"({', '.join(STARTS)}) or option ({', '.join(OPTIONS)})")
    if arm["sampler"] not in SAMPLERS:
        raise StudyError(f"unknown arm {name!r}: samplers are {', '.join(SAMPLERS)}")
    return arm


def ladder_points(space, rungs: int = 3) -> list[dict]:
    """The ladder start: `rungs` learning rates splitting the space's lr range evenly in log (3: its quartiles),
    at its smallest batch size (module docstring)."""
    spec = space.search["lr"]
    low, high = math.log10(spec["low"]), math.log10(spec["high"])
    batch = min(space.search["batch_size"]["values"]) if "batch_size" in space.search else None
    return [{"lr": float(f"{10 ** (low + k / (rungs + 1) * (high - low)):.3g}"),
             **({"batch_size": batch} if batch else {})} for k in range(1, rungs + 1)]


def start_points(arm: dict, space) -> list[dict] | None:
    if arm["start"] == "warm":
        return [{k: v for k, v in p.items() if k != "num_beams" or arm["sampled"]} for p in WARM_POINTS]
    if arm["start"].startswith("ladder"):
        rungs = int(arm["start"].removeprefix("ladder") or 3)
        return [{**p, **({"num_beams": 4} if arm["sampled"] else {})} for p in ladder_points(space, rungs)]
    return None


def arm_space(arm: dict, space):
    """The regime's search space as `arm` searches it: beams sampled or scored per checkpoint."""
    return dataclasses.replace(space, beams="sampled" if arm["sampled"] else "per_checkpoint")


def make_search(regime: str, arm: dict, seed: int, n_trials: int, max_epochs: int, space, at_once: int | None = None):
    from study.tuning.searcher import (
        METRIC,
        MODE,
        AshaAwareOptunaSearch,
        make_sampler,
        make_scheduler,
        sampler_settings,
    )

    settings = sampler_settings(arm["sampler"], regime, n_trials, seed)
    if arm["wide"] and "n_startup_trials" in settings:
        settings["n_startup_trials"] = max(settings["n_startup_trials"], n_trials // 2)
    space = arm_space(arm, space)
    searcher = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=max_epochs, study_name=regime,
                                     sampler=make_sampler(settings), at_once=at_once, planned=n_trials,
                                     points_to_evaluate=start_points(arm, space))
    searcher.set_search_properties(None, None, space.tune_space())
    sched = None
    if SCHEDULERS[arm["scheduler"]] is not None:
        sched = make_scheduler(dataclasses.replace(space, asha=dict(SCHEDULERS[arm["scheduler"]])), max_epochs,
                               None, None, at_once=at_once)
    return searcher, sched
