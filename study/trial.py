"""One trial: the Ray Tune trainables (one per regime) and a CLI that runs a single trial without Ray.

    python -m study.trial --regime full --lr 3e-4 --batch-size 32 --num-beams 4 --epochs 3 --data sample --model tiny

A trainable is a plain function of its searched config (`lr`, `batch_size`, `num_beams`); the rest of
the `Config` and the tokenized data arrive once through `tune.with_parameters`, so nothing large is
pickled per trial. Each epoch it reports the metrics with a checkpoint and, on a restart, resumes from
`tune.get_checkpoint()`.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

from study.config import Config, StudyError, add_config_flags, config_from_flags
from study.train import PreparedData, fit, prepare_data


def _node() -> dict:
    """Which Ray node runs this trial: its id (unique even when several nodes share one machine) and IP."""
    try:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    except Exception:  # noqa: BLE001 - outside Ray there is no node to name
        return {"node_id": "local", "node_ip": "local"}


def _run_in_tune(regime: str, params: dict, base: dict, data: PreparedData) -> None:
    from ray import tune

    config = Config.from_dict(base).replace(regime=regime, **params)
    node = _node()

    def report(metrics: dict, save) -> None:
        metrics = {**metrics, **node}
        if save is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            save(Path(directory))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        fit(config, data, report)
    else:
        with checkpoint.as_directory() as directory:
            fit(config, data, report, resume_from=directory)


# One trainable per regime, each thin over the shared loop (Tune names trials after the function).
def train_upstream(params: dict, base: dict, data: PreparedData) -> None:
    _run_in_tune("upstream", params, base, data)


def train_scratch(params: dict, base: dict, data: PreparedData) -> None:
    _run_in_tune("scratch", params, base, data)


def train_decoder(params: dict, base: dict, data: PreparedData) -> None:
    _run_in_tune("decoder", params, base, data)


def train_full(params: dict, base: dict, data: PreparedData) -> None:
    _run_in_tune("full", params, base, data)


TRAINABLES = {"upstream": train_upstream, "scratch": train_scratch, "decoder": train_decoder, "full": train_full}


def format_epoch(m: dict) -> str:
    def f(key: str, fmt: str) -> str:
        value = m.get(key)
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    return (f"epoch {m['epoch']:>2}  train_loss {f('train_loss', '.3f')}  val_loss {f('val_loss', '.3f')}  "
            f"val_ppl {f('val_ppl', '.2f')}  val_bleu {f('val_bleu', '.2f')}  val_chrf {f('val_chrf', '.2f')}  "
            f"exact {f('val_exact_match', '.3f')}  lr {f('lr', '.2e')}  {f('epoch_time_s', '.1f')}s  "
            f"{f('train_tokens_per_s', ',.0f')} tok/s" + ("  DIVERGED" if m.get("diverged") else ""))


def run_single(config: Config, checkpoint_dir: Path | None = None, resume: bool = False,
               data: PreparedData | None = None, quiet: bool = False) -> list[dict]:
    """Run one trial in this process; returns every epoch's metrics. With `checkpoint_dir`, the last
    epoch's checkpoint is kept there, and `resume=True` continues from it."""
    data = data or prepare_data(config)
    history: list[dict] = []
    resume_from = None
    if resume:
        if checkpoint_dir is None or not (checkpoint_dir / "state.pt").exists():
            raise StudyError(f"nothing to resume: no checkpoint in {checkpoint_dir}; run without --resume first")
        resume_from = tempfile.mkdtemp()
        shutil.copytree(checkpoint_dir, resume_from, dirs_exist_ok=True)

    def report(metrics: dict, save) -> None:
        history.append(metrics)
        if not quiet:
            print(format_epoch(metrics), flush=True)
        if save is not None and checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            save(checkpoint_dir)

    try:
        fit(config, data, report, resume_from=resume_from)
    finally:
        if resume_from:
            shutil.rmtree(resume_from, ignore_errors=True)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.trial", description="Run one trial of one regime, without Ray.")
    add_config_flags(parser)
    parser.add_argument("--checkpoint-dir", type=Path, help="keep the latest epoch's checkpoint here")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = config_from_flags(args).validate()
        checkpoint_dir = args.checkpoint_dir.resolve() if args.checkpoint_dir else None
        run_single(config, checkpoint_dir, resume=args.resume)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
