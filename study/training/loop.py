"""One training loop for every regime, readable top to bottom.

`fit(config, data, report)` builds the regime's model, trains the parameters the regime leaves
trainable, evaluates on the validation split after every epoch, and hands the metrics — with a way to
save a checkpoint — to `report`. Whoever calls it decides what reporting means: the Ray Tune trainables
call `tune.report`, the single-trial CLI prints a line. Regimes never get a loop of their own.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from study.config import Config
from study.data.batching import make_loader
from study.data.prepared import PreparedData
from study.metrics.generation import greedy_bleu as decode_greedy_bleu
from study.metrics.generation import score_split, score_widths
from study.model.device import pick_device, resolve_precision
from study.model.regimes import build_model, get_regime
from study.progress import Progress
from study.training.checkpoints import load_for_resume, save_checkpoint, set_rng_state
from study.training.step import (
    COMPILE_PAD,
    READ_EVERY,
    StepTally,
    compile_forward,
    make_optimizer,
    training_step,
)

log = logging.getLogger(__name__)

# report(metrics, save): save(directory) writes a resumable checkpoint there; None when there is nothing to resume.
Report = Callable[[dict, "Callable[[Path], None] | None"], None]


def read_interval(steps_per_epoch: int) -> int:
    """Steps between reads of the losses: `READ_EVERY`, or a tenth of a shorter epoch, so that each line the
    progress display writes to a log (one every 10 %) shows the loss as of that step."""
    return max(1, min(READ_EVERY, steps_per_epoch // 10))


def fit(config: Config, data: PreparedData, report: Report, resume_from: str | Path | None = None, *,
        greedy_bleu: bool = False) -> dict:
    """Train and evaluate one trial of `config.regime`; returns the last reported metrics.

    `greedy_bleu`: a trial decoding with beams also decodes the validation split greedily each epoch and reports
    that BLEU as `val_bleu_greedy` — what ASHA's rungs compare when a search space's `asha.rung_metric` is
    `val_bleu_greedy` (`study.tuning.runner.needs_greedy_bleu`). It costs a second generation pass per epoch,
    so nothing else asks for it. A greedy trial reports its own val_bleu there whatever is asked."""
    # `config.torch_threads` is this trial's, not the process's: whatever runs next here (another trial in
    # a notebook, the next test) gets torch's thread count back as it was.
    threads = torch.get_num_threads()
    try:
        return _fit(config, data, report, resume_from, greedy_bleu)
    finally:
        torch.set_num_threads(threads)


def _fit(config: Config, data: PreparedData, report: Report, resume_from: str | Path | None,
         greedy_bleu: bool) -> dict:
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = pick_device(config.device)
    regime = get_regime(config.regime)
    random.seed(config.seed)
    np.random.seed(config.seed)
    model, counts = build_model(config, data.tokenizer, data.upstream)  # seeds torch with config.seed
    model.to(device)
    # `auto` decided once, knowing the model's width and the batch size: training and validation run in the same
    # precision.
    config = config.replace(precision=resolve_precision(config.precision, device, getattr(model.config, "d_model", 0),
                                                        config.batch_size))

    def validate() -> dict:
        # Evaluation draws from torch's RNG (generation does): run it on a forked RNG so that the next epoch's
        # dropout does not depend on how, or how often, the trial was evaluated (e.g. on its num_beams).
        with torch.random.fork_rng(devices=[] if device.type != "cuda" else None):
            if len(set(config.val_beams)) > 1:  # every width the search space lists, the best one reported
                metrics = score_widths(model, data.validation, data.tokenizer, config, device, config.val_beams)
                if greedy_bleu and "val_bleu_greedy" not in metrics:  # widths without greedy, ranked greedily
                    metrics["val_bleu_greedy"] = decode_greedy_bleu(model, data.validation, data.tokenizer, config,
                                                                    device)
                return metrics
            metrics = score_split(model, data.validation, data.tokenizer, config, device)[0]
            if config.num_beams == 1:
                return {**metrics, "val_bleu_greedy": metrics["val_bleu"]}
            if not greedy_bleu:
                return metrics
            # Greedy BLEU too, when ASHA's rungs compare trials by it, so that they rank training runs, not
            # decoders (see study.tuning.searcher.RUNG_METRIC). Generation only: the loss and multi-reference
            # scores do not depend on the decoder.
            return {**metrics, "val_bleu_greedy": decode_greedy_bleu(model, data.validation, data.tokenizer, config,
                                                                    device)}

    if not regime.trains:  # upstream: one zero-shot evaluation, nothing to resume
        start = time.perf_counter()
        metrics = {**validate(), "epoch": 0, "train_loss": float("nan"), "lr": 0.0, "train_tokens_per_s": 0.0,
                   "diverged": False, **counts}
        metrics["epoch_time_s"] = time.perf_counter() - start
        report(metrics, None)
        return metrics

    steps_per_epoch = len(make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True,
                                      seed=config.seed))
    forward, pad_to = None, None
    if config.compile:  # training steps only: generation runs the eager model, whose state_dict is saved
        pad_to = COMPILE_PAD
        shapes = 2 * -(-config.max_source_tokens // pad_to) * -(-config.max_target_tokens // pad_to)
        forward = compile_forward(model, shapes)
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch * config.epochs)
    first_epoch = 1
    if resume_from is not None:
        state = load_for_resume(resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        first_epoch = state["epoch"] + 1
        log.info("resumed from %s at epoch %d", resume_from, first_epoch)

    metrics: dict = {}
    read_every = read_interval(steps_per_epoch)  # one copy from the device per this many steps
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum, tokens, tally, lrs = 0.0, 0, StepTally(), []
        mean_loss = None  # as of the last read
        bar = Progress(steps_per_epoch, f"epoch {epoch}/{config.epochs} train")
        # The batch order depends only on (seed, epoch): a resumed trial sees the batches it would have seen.
        loader = make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True, seed=config.seed,
                             epoch=epoch, pad_to_multiple_of=pad_to)
        for step, batch in enumerate(loader, 1):
            lrs.append(scheduler.get_last_lr()[0])  # the lr this step trains at: a diverged trial reports it
            tally.add(*training_step(model, batch, optimizer, scheduler, config, device, forward))
            if len(tally) == read_every or step == len(loader):
                for (loss, n), lr in zip(tally.read(), lrs):
                    if not math.isfinite(loss):
                        bar.close()
                        log.warning("non-finite loss at epoch %d (lr %g): trial diverged", epoch, config.lr)
                        metrics = {"epoch": epoch, "diverged": True, "train_loss": float("nan"),
                                   "val_loss": float("nan"), "val_ppl": float("nan"), "val_bleu": 0.0,
                                   "val_bleu_greedy": 0.0, "val_chrf": 0.0, "val_exact_match": 0.0, "lr": lr,
                                   "epoch_time_s": time.perf_counter() - start, "train_tokens_per_s": 0.0,
                                   **counts}
                        report(metrics, None)
                        return metrics
                    loss_sum += loss * n
                    tokens += n
                lrs = []
                mean_loss = loss_sum / max(tokens, 1)
            bar.update(loss=mean_loss)
        bar.close()
        train_time = time.perf_counter() - start
        metrics = {**validate(), "epoch": epoch, "train_loss": loss_sum / max(tokens, 1),
                   "lr": scheduler.get_last_lr()[0], "train_tokens_per_s": tokens / train_time,
                   "epoch_time_s": time.perf_counter() - start, "diverged": False, **counts}

        def save(directory: Path, epoch: int = epoch) -> None:
            save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                            config=config)

        report(metrics, save)
    return metrics
