"""What a study leaves on disk: its record (study.json), each regime's best trial on the test split, summary.csv.

Every file is written to a temporary name and renamed into place, so an interrupted study never leaves
a half-written result behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from study.config import Config, StudyError

PACKAGES = ("torch", "transformers", "sentencepiece", "datasets", "sacrebleu", "ray", "optuna", "pandas")
SUMMARY_COLUMNS = ["regime", "best_val_bleu", "test_bleu", "test_chrf", "test_loss", "test_ppl", "test_exact_match",
                   "lr", "batch_size", "num_beams", "best_epoch", "epochs_run", "trial_wall_s", "search_wall_s",
                   "trials", "pruned", "trainable_params"]


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path` (same suffix, so writers that infer the format
    from it - parquet, PNG - still can), then rename it onto `path`: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


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
    from study.metrics import signatures

    signature = signatures()
    return {
        "name": name, "preset": preset, "regimes": regimes, "seed": config.seed,
        "config": config.to_dict(), "budget": asdict(budget),
        "search_spaces": {r: {"source": s.source, "search": s.search, "fixed": s.fixed, "asha": s.asha}
                          for r, s in spaces.items()},
        "versions": versions(), "git_commit": git_commit(),
        **signature,
        "host": platform.node(), "cluster_resources": _cluster_resources(), "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _cluster_resources() -> dict:
    try:
        import ray

        return dict(ray.cluster_resources()) if ray.is_initialized() else {}
    except Exception:  # noqa: BLE001
        return {}


def evaluate_best(grid, regime: str, base: Config, data, study_dir: Path, search_wall_s: float) -> dict:
    """Restore the regime's best trial (ranked by its best epoch's val_bleu) and score it once on test."""
    from study.metrics import evaluate, signatures
    from study.train import load_trained_model, pick_device

    scored = [r for r in grid if r.metrics and "val_bleu" in r.metrics]
    if not scored:
        first = next((r.error for r in grid if r.error), None)
        raise StudyError(f"no trial of {regime} reported a score ({len(grid)} trial(s), "
                         f"first error: {str(first).strip().splitlines()[-1] if first else 'none'}); "
                         f"see {study_dir / regime} and fix the cause, then resume")
    best = grid.get_best_result(metric="val_bleu", mode="max", scope="all")
    history = best.metrics_dataframe
    best_row = history.loc[history["val_bleu"].idxmax()]
    searched = {k: v for k, v in best.config.items()}
    config = base.replace(**searched)
    checkpoint = best.get_best_checkpoint("val_bleu", "max") if best.best_checkpoints else None
    device = pick_device(config.device)
    if checkpoint is None:
        model = load_trained_model(config, data.tokenizer, None, data.upstream)
    else:
        with checkpoint.as_directory() as directory:
            model = load_trained_model(config, data.tokenizer, directory, data.upstream)
    model.to(device)
    metrics, hypotheses, references = evaluate(model, data.test, data.tokenizer, config, device, split="test")
    out_dir = study_dir / regime
    write_text(out_dir / "test.hyp.txt", "".join(h.replace("\n", " ") + "\n" for h in hypotheses))
    write_text(out_dir / "test.ref.txt", "".join(r.replace("\n", " ") + "\n" for r in references))
    epochs_per_trial = [r.metrics.get("epoch", 0) for r in grid]
    trials = len(grid)
    pruned = sum(1 for r in grid if not r.error and not r.metrics.get("diverged")
                 and 0 < r.metrics.get("epoch", 0) < base.epochs)
    row = {
        "regime": regime, "trial_id": best.metrics.get("trial_id"),
        "best_val_bleu": float(best_row["val_bleu"]), **{k: float(v) for k, v in metrics.items()},
        **{k: searched.get(k, getattr(config, k)) for k in ("lr", "batch_size", "num_beams")},
        "best_epoch": int(best_row["epoch"]), "epochs_run": int(history["epoch"].max()),
        "trial_wall_s": float(history["time_total_s"].max()), "search_wall_s": search_wall_s,
        "trials": trials, "pruned": pruned, "errored": sum(1 for r in grid if r.error),
        "diverged": sum(1 for r in grid if r.metrics.get("diverged")),
        "trainable_params": int(best.metrics.get("trainable_params", 0)),
        "total_params": int(best.metrics.get("total_params", 0)),
        "epochs_per_trial": epochs_per_trial, "test_pairs": len(references),
        "checkpoint": checkpoint.path if checkpoint is not None else None,
        "bleu_signature": signatures()["bleu_signature"],
        "config": config.to_dict(),
    }
    if regime == "upstream":
        row["lr"] = None
        row["batch_size"] = None
    write_json(out_dir / "best.json", row)
    return row


def write_summary(study_dir: Path, rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    write_text(study_dir / "summary.csv", frame.to_csv(index=False))
    shown = frame[["regime", "best_val_bleu", "test_bleu", "lr", "batch_size", "num_beams", "best_epoch",
                   "trial_wall_s", "search_wall_s"]].copy()
    return shown.round({"best_val_bleu": 2, "test_bleu": 2, "trial_wall_s": 1, "search_wall_s": 1})
