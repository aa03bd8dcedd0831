"""One trial of one regime in this process, without Ray: the loop the Tune trainables run, printed per epoch.

    python -m study.trial --regime full --lr 3e-4 --batch-size 32 --num-beams 4 --epochs 3 --data sample --model tiny

The Ray Tune trainables (one per regime) are in `study.tuning.trainables`; both run
`study.training.loop.fit`.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

from study import progress
from study.cli import ArgumentParser, run_cli
from study.config import Config, StudyError, add_config_flags, config_from_flags
from study.data.prepared import PreparedData
from study.model.regimes import get_regime
from study.training.checkpoints import has_checkpoint
from study.training.loop import fit
from study.training.pretraining import prepare_data_with_upstream


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
    regime = get_regime(config.regime)
    data = data or prepare_data_with_upstream(config, need_upstream=regime.pretrained)
    history: list[dict] = []
    resume_from = None
    if resume:
        if not has_checkpoint(checkpoint_dir):
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
    parser = ArgumentParser(prog="python -m study.trial", description="Run one trial of one regime, without Ray.")
    add_config_flags(parser)
    parser.add_argument("--checkpoint-dir", type=Path, help="keep the latest epoch's checkpoint here")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar inside epochs and validation (the per-epoch line stays)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress.set_mode("off" if args.no_progress else "auto")  # auto: a bar on a terminal, else a line per ~10 %

    def body() -> None:
        config = config_from_flags(args)
        checkpoint_dir = args.checkpoint_dir.resolve() if args.checkpoint_dir else None
        run_single(config, checkpoint_dir, resume=args.resume)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
