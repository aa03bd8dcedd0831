"""The study in MLflow (`study.run --mlflow URI`): one run per trial, and one run per regime for its best trial's
test scores with the exported model.

    python -m study.run --mlflow sqlite:///results/mlflow.db        # MLflow's recommended local store
    python -m study.run --mlflow file:results/mlruns                # a plain folder (MLflow's file store)
    mlflow ui --backend-store-uri sqlite:///results/mlflow.db       # or mlflow.search_runs(experiment_names=[study])

Each study is an MLflow experiment named after it. Its runs:
- a trial: Ray Tune's own `MLflowLoggerCallback` (driver side): the trial's sampled hyperparameters as params,
  every epoch's result as metrics at step = epoch (val_bleu, val_loss, train_loss, ...), tags `study`, `regime`,
  `run=trial` and Ray's `trial_name` (`train_<regime>_<trial id>`), status FINISHED or FAILED;
- a regime's best trial (`<regime>-best`, tag `run=best`): best.json's test metrics and the best trial's
  searched hyperparameters, its trial id as a tag, and as artifacts the exported model folder (`model/`),
  best.json and the test translations.

A study resumed with `--resume` keeps logging through the callback its Tune experiment was started with
(Tune restores it from tuner.pkl): a trial resumed mid-way gets a second run. The seed re-runs (`--seeds`) are
not logged as runs; their spread is in the best run's `test_*_mean`/`_sd` metrics.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from study.config import StudyError
from study.outputs.export import model_dir

INSTALL = 'pip install "t5-regime-study[mlflow]" (or pip install mlflow)'
TEXTS = ("best.json", "test.hyp.txt", "test.ref.txt")


def _allow_file_store(uri: str) -> None:
    """MLflow 3 refuses its file store (`file:` or a bare path) unless MLFLOW_ALLOW_FILE_STORE is set, as it is
    in maintenance mode; a user who passes a `file:` URI asked for exactly that store, so it is allowed here."""
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def check_tracking_uri(uri: str) -> None:
    """Fail in seconds, before Ray starts, when MLflow is missing or the tracking store cannot be opened."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise StudyError(f"--mlflow needs MLflow, which is not installed: {INSTALL}") from err
    _allow_file_store(uri)
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - MLflow raises many kinds for a bad store
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StudyError(f"cannot open the MLflow tracking store {uri!r} ({first[:200]}); pass a reachable tracking "
                         f"server, sqlite:///path/mlflow.db or file:/path/mlruns") from err


def trial_callbacks(uri: str | None, study: str, regime: str) -> list:
    """Ray Tune callbacks for one regime's search: MLflowLoggerCallback with the study and regime as tags."""
    if not uri:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    _allow_file_store(uri)
    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=study,
                                 tags={"study": study, "regime": regime, "run": "trial"})]


def log_best(uri: str, study_dir: Path, regime: str, study: str) -> str:
    """One MLflow run for the regime's best trial: best.json's test metrics, its searched hyperparameters, and
    the exported model folder and test files as artifacts. Returns the run's id."""
    import mlflow

    _allow_file_store(uri)
    regime_dir = Path(study_dir) / regime
    best = json.loads((regime_dir / "best.json").read_text(encoding="utf-8"))
    record = json.loads((Path(study_dir) / "study.json").read_text(encoding="utf-8"))
    searched = record.get("search_spaces", {}).get(regime, {}).get("search", {})
    metrics = {k: float(v) for k, v in best.items() if (k.startswith("test_") or k in ("best_val_bleu", "best_epoch"))
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(study)
    run = client.create_run(experiment_id, run_name=f"{regime}-best", tags={
        "study": study, "regime": regime, "run": "best", "trial_id": str(best.get("trial_id")),
        "bleu_signature": str(best.get("bleu_signature"))})
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in metrics.items()],
                         params=[mlflow.entities.Param(k, str(best.get(k))) for k in searched if k in best])
        folder = model_dir(study_dir, regime)
        if folder.is_dir():
            client.log_artifacts(run_id, str(folder), artifact_path="model")
        for name in TEXTS:
            if (regime_dir / name).is_file():
                client.log_artifact(run_id, str(regime_dir / name))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def log_best_or_warn(uri: str | None, study_dir: Path, regime: str, study: str) -> None:
    """`log_best`, a failure reported on stderr: the study's results are complete without it."""
    if not uri:
        return
    try:
        log_best(uri, study_dir, regime, study)
    except Exception as err:  # noqa: BLE001 - a tracking problem must not end a finished search
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"warning: could not log {regime}'s best trial to MLflow ({type(err).__name__}: {first}); its results "
              f"are complete", file=sys.stderr, flush=True)
