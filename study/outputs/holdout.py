"""Each regime's best trial (and its seed re-runs) scored once on the test split: best.json and the text files
the sacrebleu command line re-scores.

The model scored is the best *epoch's* checkpoint of the trial with the best validation BLEU
(`study.tuning.best`); the test split is touched here and nowhere else. Scoring runs as Ray tasks with a
trial's resources (`resources`: the cpu/gpu of one trial), one per model, in parallel: on a GPU cluster it
runs on a GPU worker, not on the head. The driver only writes the files:

    test.hyp.txt + test.ref.txt                       one row per test pair (`test_bleu`, the ranked figure)
    test.src.txt                                      each row's English source (rows sharing one are clustered)
    test.hyp.multi.txt + test.ref.0.txt, .1.txt, ...  each distinct source once, all its references
                                                      (`test_bleu_multi`)
    test.hyp.seed<N>.txt                              the seed re-runs' translations (rows as test.ref.txt)
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from study import progress
from study.common import write_json, write_lines
from study.config import Config
from study.data.prepared import PreparedData
from study.metrics.scoring import multi_reference_bleu, reference_streams, references_by_source, signatures
from study.model.regimes import Regime, ensure_registered, get_regime
from study.tuning.best import best_trial, outcome_counts
from study.tuning.searcher import METRIC
from study.tuning.trainables import node

SPREAD = ("test_bleu", "test_chrf", "test_loss", "test_bleu_multi")  # reported as mean, sd and n over seeds


def score_checkpoint(config: dict, checkpoint, data: PreparedData, regime: Regime | None = None) -> dict:
    """Inside a Ray task: restore `checkpoint` (None: the regime's untrained model) and score it on test.
    `regime`: its definition, for a regime registered in the driver that the worker has never imported."""
    import torch

    started = time.perf_counter()
    if regime is not None:  # given only to a Ray task: register it there, and let the driver draw the progress
        ensure_registered(regime)
        progress.running_in_ray(regime.name)

    from study.metrics.generation import score_split
    from study.model.device import pick_device
    from study.training.checkpoints import load_trained_model

    config = Config.from_dict(config)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = pick_device(config.device)
    if checkpoint is None:
        model = load_trained_model(config, data.tokenizer, None, data.upstream)
    else:
        with checkpoint.as_directory() as directory:
            model = load_trained_model(config, data.tokenizer, directory, data.upstream)
    model.to(device)
    metrics, hypotheses, references = score_split(model, data.test, data.tokenizer, config, device, split="test")
    return {"metrics": metrics, "hypotheses": hypotheses, "references": references, "device": str(device),
            "seconds": time.perf_counter() - started, **node()}


def score_on_test(jobs: list[tuple[Config, object]], data: PreparedData, resources: dict | None) -> list[dict]:
    """Score each (config, checkpoint) of `jobs` in a Ray task of its own with one trial's `resources`."""
    import ray

    if not ray.is_initialized():  # a caller outside a study (a notebook): score here, one after the other
        return [score_checkpoint(config.to_dict(), checkpoint, data) for config, checkpoint in jobs]
    resources = resources or {}
    task = ray.remote(score_checkpoint).options(num_cpus=resources.get("cpu", 1), num_gpus=resources.get("gpu", 0),
                                                name="score_on_test")
    shared = ray.put(data)  # once, not once per task
    return ray.get([task.remote(config.to_dict(), checkpoint, shared, get_regime(config.regime))
                    for config, checkpoint in jobs])


def write_test_texts(out_dir: Path, sources: list[str], scored: dict) -> dict:
    """test.hyp/ref/src.txt and the multi-reference files of the primary model; returns its multi-reference scores."""
    hypotheses, references = scored["hypotheses"], scored["references"]
    write_lines(out_dir / "test.hyp.txt", hypotheses)
    write_lines(out_dir / "test.ref.txt", references)
    write_lines(out_dir / "test.src.txt", sources)  # which rows share a source: the analysis resamples them together
    distinct_hyps, refs = references_by_source(sources, hypotheses, references)
    write_lines(out_dir / "test.hyp.multi.txt", distinct_hyps)
    streams = reference_streams(refs)
    for old in out_dir.glob("test.ref.*.txt"):  # a re-scored regime may have had more reference streams
        if old.name.split(".")[2].isdigit() and int(old.name.split(".")[2]) >= len(streams):
            old.unlink()
    for k, stream in enumerate(streams):
        write_lines(out_dir / f"test.ref.{k}.txt", stream)
    return multi_reference_bleu(sources, hypotheses, references)


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (None below two values) and n of the finite `values`."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    mean = sum(finite) / n if n else None
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "sd": sd, "n": n}


def _seed_jobs(seed_grid, base: Config, regime: str, epoch: int) -> tuple[list, list[dict], list[dict], list[dict]]:
    """(config, last checkpoint) of every seed re-run that reached `epoch` (the best trial's selected epoch: a
    seed re-run stops there, `study.tuning.seeds`, and is scored there and nowhere else), what is known of
    each, and the re-runs left unscored: those that diverged (a non-finite loss; their last checkpoint is an
    earlier epoch's, or none at epoch 1) and those that failed otherwise (errored or stopped before `epoch`).
    Neither is scored at another epoch; best.json lists both, and the verdicts count the diverged ones."""
    jobs, seeds, diverged, failed = [], [], [], []
    for result in seed_grid or []:
        metrics = result.metrics or {}
        seed, reached = int(result.config["seed"]), metrics.get("epoch")
        known = {"seed": seed, "trial_id": metrics.get("trial_id")}
        if metrics.get("diverged"):
            diverged.append({**known, "epoch": int(reached)})
            print(f"warning: the seed re-run of {regime} at seed {seed} diverged at epoch {reached}: not scored, "
                  "listed in best.json's seeds_diverged", file=sys.stderr)
            continue
        if METRIC not in metrics or not result.best_checkpoints or reached != epoch:
            why = (str(result.error).strip().splitlines()[-1] if result.error else
                   f"it reached epoch {reached}, not {epoch}" if reached is not None else "no result")
            failed.append({**known, "epoch": reached, "reason": why})
            print(f"warning: the seed re-run of {regime} at seed {seed} has no score at epoch {epoch} and is left "
                  f"out of the spread ({why}); listed in best.json's seeds_failed", file=sys.stderr)
            continue
        jobs.append((base.replace(**result.config), result.checkpoint))
        seeds.append({**known, "scored_epoch": int(reached), "val_bleu": float(metrics[METRIC])})
    return jobs, seeds, diverged, failed


def score_best(grid, regime: str, base: Config, data: PreparedData, study_dir: Path, search_wall_s: float,
                  searched: list[str], *, resources: dict | None = None, seed_grid=None) -> dict:
    """Restore the regime's best trial (ranked by its best epoch's val_bleu) and score it once on test, with
    the seed re-runs of its configuration (`seed_grid`, from `study.tuning.seeds`) if any; write best.json.
    `searched`: the names the regime's search space samples (recorded with the row); `resources`: one
    trial's {"cpu": n, "gpu": n}, given to each scoring task."""
    best = best_trial(grid, regime, study_dir)
    config = base.replace(**best.params)
    jobs, seeds, diverged, failed = _seed_jobs(seed_grid, base, regime, best.best_epoch)
    primary, *others = score_on_test([(config, best.checkpoint), *jobs], data, resources)
    out_dir = study_dir / regime
    sources = list(data.test["en"])
    multi = write_test_texts(out_dir, sources, primary)
    per_seed = [{"seed": config.seed, "trial_id": best.result.metrics.get("trial_id"), "scored_epoch": best.best_epoch,
                 "val_bleu": best.best_val_bleu, "scored": primary}]
    for info, scored in zip(seeds, others):
        write_lines(out_dir / f"test.hyp.seed{info['seed']}.txt", scored["hypotheses"])
        per_seed.append({**info, "scored": scored})
    for entry in per_seed:
        scored = entry.pop("scored")
        entry |= {k: float(v) for k, v in scored["metrics"].items()} | {"node_id": scored["node_id"]}
    metrics = primary["metrics"]
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
        "epochs_per_trial": [r.metrics.get("epoch", 0) for r in grid], "test_pairs": len(primary["references"]),
        "checkpoint": best.checkpoint.path if best.checkpoint is not None else None,
        **signatures(),  # bleu_signature, chrf_signature: the model card's model-index names them
        # one reference per source (each distinct source once, all its references): see study.metrics.scoring
        "test_bleu_multi_signature": multi["bleu_multi_signature"], "test_sources": multi["sources"],
        "test_multi_reference_sources": multi["multi_reference_sources"],
        "test_max_references": multi["max_references"],
        # where the scoring task ran (a GPU worker on a cluster), and on what device
        "scored_node_id": primary["node_id"], "scored_node_ip": primary["node_ip"], "scored_device": primary["device"],
        "seeds": per_seed,
        # seed re-runs never scored: diverged (the verdicts count them: study.analysis.verdicts) or failed
        "seeds_diverged": diverged, "seeds_failed": failed,
        # the scoring tasks' own time, added up (the study's timings count it as slot work)
        "test_scoring_task_s": primary["seconds"] + sum(scored["seconds"] for scored in others),
        **{f"{name}_{k}": v for name in SPREAD for k, v in spread([s.get(name) for s in per_seed]).items()},
        "config": config.to_dict(),
    }
    if not trains:  # nothing was trained: no learning rate or batch size applies
        for name in ("lr", "batch_size"):
            if name in row:
                row[name] = None
    write_json(out_dir / "best.json", row)
    return row
