"""Each regime's best trial scored once on the test split: best.json, test.hyp.txt and test.ref.txt.

The model scored is the best *epoch's* checkpoint of the trial with the best validation BLEU
(`study.tuning.best`); the test split is touched here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from study.common import write_json, write_text
from study.config import Config
from study.data.prepared import PreparedData
from study.metrics.generation import evaluate
from study.metrics.scoring import signatures
from study.model.device import pick_device
from study.model.regimes import get_regime
from study.training.checkpoints import load_trained_model
from study.tuning.best import best_trial, outcome_counts


def evaluate_best(grid, regime: str, base: Config, data: PreparedData, study_dir: Path, search_wall_s: float,
                  searched: list[str]) -> dict:
    """Restore the regime's best trial (ranked by its best epoch's val_bleu) and score it once on test.
    `searched`: the names the regime's search space samples (recorded with the row)."""
    best = best_trial(grid, regime, study_dir)
    config = base.replace(**best.params)
    device = pick_device(config.device)
    if best.checkpoint is None:
        model = load_trained_model(config, data.tokenizer, None, data.upstream)
    else:
        with best.checkpoint.as_directory() as directory:
            model = load_trained_model(config, data.tokenizer, directory, data.upstream)
    model.to(device)
    metrics, hypotheses, references = evaluate(model, data.test, data.tokenizer, config, device, split="test")
    out_dir = study_dir / regime
    write_text(out_dir / "test.hyp.txt", "".join(h.replace("\n", " ") + "\n" for h in hypotheses))
    write_text(out_dir / "test.ref.txt", "".join(r.replace("\n", " ") + "\n" for r in references))
    history = best.result.metrics_dataframe
    trains = get_regime(regime).trains
    row = {
        "regime": regime, "trial_id": best.result.metrics.get("trial_id"),
        "best_val_bleu": best.best_val_bleu, **{k: float(v) for k, v in metrics.items()},
        **{k: best.params.get(k, getattr(config, k, None)) for k in searched},
        "best_epoch": best.best_epoch, "epochs_run": int(history["epoch"].max()),
        "trial_wall_s": float(history["time_total_s"].max()), "search_wall_s": search_wall_s,
        "trials": len(grid), **outcome_counts(grid, base.epochs, trains),
        "trainable_params": int(best.result.metrics.get("trainable_params", 0)),
        "total_params": int(best.result.metrics.get("total_params", 0)),
        "epochs_per_trial": [r.metrics.get("epoch", 0) for r in grid], "test_pairs": len(references),
        "checkpoint": best.checkpoint.path if best.checkpoint is not None else None,
        "bleu_signature": signatures()["bleu_signature"],
        "config": config.to_dict(),
    }
    if not trains:  # nothing was trained: no learning rate or batch size applies
        for name in ("lr", "batch_size"):
            if name in row:
                row[name] = None
    write_json(out_dir / "best.json", row)
    return row
