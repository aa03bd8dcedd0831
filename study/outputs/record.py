"""A study's record (study.json: config, budget, search spaces, versions, signatures) and summary.csv.

Every file is written with `study.common.write_atomic`, so an interrupted study never leaves a
half-written result behind.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from study.common import write_text
from study.config import Budget, Config

PACKAGES = ("torch", "transformers", "sentencepiece", "datasets", "sacrebleu", "ray", "optuna", "pandas")
SCORE_COLUMNS = ["regime", "best_val_bleu", "test_bleu", "test_chrf", "test_loss", "test_ppl", "test_exact_match"]
RUN_COLUMNS = ["best_epoch", "epochs_run", "trial_wall_s", "search_wall_s", "trials", "pruned", "trainable_params"]


def searched_names(spaces: dict) -> list[str]:
    """The hyperparameters any regime searches, in the order the search spaces name them (from study.json's
    `search_spaces` or the SearchSpace objects): the tables show these, whatever a YAML searches."""
    names: dict[str, None] = {}
    for space in spaces.values():
        search = space.get("search", {}) if isinstance(space, dict) else space.search
        names.update(dict.fromkeys(search))
    return list(names)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def study_record(config: Config, budget, regimes: list[str], preset: str, spaces: dict, name: str) -> dict:
    from study.metrics.scoring import signatures
    from study.model.provenance import describe as describe_upstream
    from study.model.regimes import REGIMES
    from study.tuning.searcher import (  # imports Ray: not for the analysis
        planned_trials,
        sampler_settings,
        scheduler_settings,
        search_width,
    )

    signature = signatures()
    return {
        "name": name, "preset": preset, "regimes": regimes, "seed": config.seed,
        "trains": {r: REGIMES[r].trains for r in regimes},
        "config": config.to_dict(), "budget": asdict(budget),
        # what the pretrained weights saw before the study, and which regimes start from them (report, cards)
        "upstream": {**describe_upstream(config.model), "used_by": [r for r in regimes if REGIMES[r].pretrained]},
        "search_spaces": {r: {"source": s.source, "search": s.search, "fixed": s.fixed, "asha": s.asha,
                               **({"start": s.start} if s.start else {}), "beams": s.beams,
                               **({"width": s.width} if s.width is not None else {})}
                          for r, s in spaces.items()},
        # each regime's search width as run: what its proposals and rungs knew (the same on every machine)
        "search_widths": {r: search_width(spaces[r], planned_trials(True, budget.num_samples, spaces[r]))
                          if REGIMES[r].trains else 1 for r in regimes},
        # each regime's sampler as the runner builds it: which, its seed, TPE's random start, ...
        "samplers": {r: sampler_settings(budget.searcher, r, planned_trials(REGIMES[r].trains, budget.num_samples,
                                                                            spaces[r]), config.seed, budget.same_draws,
                                             REGIMES[r].trains)
                     for r in regimes},
        # each trained regime's early stopping: ASHA's rung metric, first rung, factor, results before it stops
        "schedulers": {r: scheduler_settings(spaces[r], budget.max_epochs, budget.grace_period, budget.reduction_factor)
                       if budget.scheduler == "asha" and REGIMES[r].trains else None for r in regimes},
        "versions": versions(), "git_commit": git_commit(),
        **signature,
        "host": platform.node(), "cluster_resources": _cluster_resources(), "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# The budget's fields that a resumed study takes from the command resuming it: the machine it runs on now (a
# cluster may have grown or shrunk since), not the search it runs, which its record fixes.
MACHINE_FIELDS = ("max_concurrent", "cpus_per_trial", "gpus_per_trial", "max_failures", "regimes_at_once")


def settings_from_record(record: dict, machine: dict, keep_checkpoints: bool = False
                         ) -> tuple[Config, Budget, list[str], dict]:
    """A resumed study's (config, budget, regimes, search spaces), read once from its study.json (as
    `study_record` wrote it): the config, regimes and spaces it started with, its search's budget (a regime the
    interruption left unstarted gets the sampler, scheduler and seeds the study began with), and from `machine`
    today's MACHINE_FIELDS (None where the cluster decides; regimes_at_once None: all of them). Checkpoints
    are kept if the study kept them or `keep_checkpoints` asks. Records older than a budget field get the value
    such studies ran with."""
    from study.tuning.space import parse_search_space

    regimes = list(record["regimes"])
    recorded = record["budget"]
    budget = Budget(num_samples=recorded["num_samples"], max_epochs=recorded["max_epochs"],
                    grace_period=recorded.get("grace_period"), reduction_factor=recorded.get("reduction_factor"),
                    searcher=recorded.get("searcher", "tpe"), scheduler=recorded.get("scheduler", "asha"),
                    seeds=recorded.get("seeds", 1), same_draws=recorded.get("same_draws", False),
                    keep_checkpoints=keep_checkpoints or recorded.get("keep_checkpoints", False),
                    **{k: machine[k] for k in MACHINE_FIELDS if k != "regimes_at_once"},
                    regimes_at_once=machine["regimes_at_once"] or len(regimes))
    spaces = {r: parse_search_space({k: v for k, v in raw.items() if k != "source"}, raw["source"])
              for r, raw in record["search_spaces"].items()}
    return Config.from_dict(record["config"]), budget, regimes, spaces


def count_test_scoring(study_dir: Path, regime: str) -> int:
    """Count one more scoring of the regime's test split in study.json's `test_scored` (more than one when
    --more-trials changed its best trial, or when a study interrupted while scoring scored again on --resume);
    returns the regime's count. Counted before the scoring starts: a look at the test split is never uncounted."""
    import json

    from study.common import write_json

    path = Path(study_dir) / "study.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    counts = record.setdefault("test_scored", {})
    counts[regime] = counts.get(regime, 0) + 1
    write_json(path, record)
    return counts[regime]


def _cluster_resources() -> dict:
    try:
        import ray

        return dict(ray.cluster_resources()) if ray.is_initialized() else {}
    except Exception:  # noqa: BLE001
        return {}


def write_summary(study_dir: Path, rows: list[dict], searched: list[str]) -> pd.DataFrame:
    """summary.csv (one row per regime); returns the part printed at the end of a study."""
    frame = pd.DataFrame(rows).reindex(columns=SCORE_COLUMNS + searched + RUN_COLUMNS)
    write_text(study_dir / "summary.csv", frame.to_csv(index=False))
    shown = frame[["regime", "best_val_bleu", "test_bleu", *searched, "best_epoch", "trial_wall_s",
                   "search_wall_s"]].copy()
    return shown.round({"best_val_bleu": 2, "test_bleu": 2, "trial_wall_s": 1, "search_wall_s": 1})
