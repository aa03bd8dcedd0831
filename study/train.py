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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from study import data as data_lib
from study import models
from study.batching import make_loader
from study.config import Config
from study.metrics import autocast, evaluate
from study.regimes import build_model, get_regime

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
# report(metrics, save): save(directory) writes a resumable checkpoint there; None when there is nothing to resume.
Report = Callable[[dict, "Callable[[Path], None] | None"], None]


@dataclass
class PreparedData:
    """Tokenized splits, their tokenizer and (for `tiny`) the pretrained upstream's weights, prepared once
    in the driver and shared by every trial through Ray's object store."""

    tokenizer: PreTrainedTokenizerBase
    train: Dataset
    validation: Dataset  # what every epoch is scored on (capped by max_eval_pairs)
    test: Dataset  # scored once, on each regime's best trial, after its search
    counts: dict = field(default_factory=dict)
    upstream: dict | None = None  # state_dict of the pretrained tiny upstream, when a regime needs one
    upstream_dir: str | None = None  # where that upstream is cached (a normal Hugging Face model directory)


def _in_memory(ds: Dataset) -> Dataset:
    # Memory-mapped datasets pickle as file paths, which a trial on another node cannot open:
    # materialise them so `tune.with_parameters` ships the data itself through the object store.
    return Dataset.from_dict(ds.to_dict(), features=ds.features)


def prepare_text(config: Config) -> tuple[DatasetDict, Dataset, PreTrainedTokenizerBase, dict]:
    """Load, clean and split the pairs; get the tokenizer. Returns (splits with train capped, the whole
    training split, tokenizer, counts).

    The tokenizer (for `tiny`) and the pretrained upstream learn from the *whole* training split:
    `max_train_pairs` limits the labelled pairs a quick study trains on, not what the vocabulary or
    pre-training see. Validation and test text never reach either.
    """
    config.validate()
    splits, counts = data_lib.load_splits(config.replace(max_train_pairs=None))
    whole_train = splits["train"]
    tokenizer = models.load_tokenizer(config, list(whole_train["en"]), list(whole_train["fr"]))
    splits["train"] = data_lib.cap_pairs(whole_train, config.max_train_pairs, config.data_seed)
    if len(splits["train"]) < len(whole_train):
        print(f"training on {len(splits['train'])} of {len(whole_train)} training pairs (max_train_pairs)", flush=True)
    counts["train"] = len(splits["train"])
    return splits, whole_train, tokenizer, counts


def prepare_data(config: Config, need_upstream: bool | None = None) -> PreparedData:
    """Everything trials share. `need_upstream` (default: whether config.regime starts pretrained)
    makes sure the tiny model's pretrained upstream exists, pretraining it once if no cache matches."""
    splits, whole_train, tokenizer, counts = prepare_text(config)
    tokenized, token_counts = data_lib.tokenize_splits(splits, tokenizer, config)
    # Seeded random subsets, not the first rows: files such as Tatoeba's are sorted by length.
    validation = data_lib.cap_pairs(tokenized["validation"], config.max_eval_pairs, config.data_seed)
    test = data_lib.cap_pairs(tokenized["test"], config.max_test_pairs, config.data_seed)
    if need_upstream is None:
        need_upstream = get_regime(config.regime).pretrained
    upstream, upstream_dir = None, None
    if need_upstream and models.is_tiny(config.model):
        from study import pretrain  # late import: only studies with pretrained tiny regimes need it

        upstream_dir = str(pretrain.ensure_upstream(config, tokenizer, list(whole_train["en"]),
                                                    list(whole_train["fr"])))
        upstream = models.load_state_dict(upstream_dir)
    return PreparedData(tokenizer, _in_memory(tokenized["train"]), _in_memory(validation),
                        _in_memory(test), {**counts, **token_counts}, upstream, upstream_dir)


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(directory: str | Path) -> dict:
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def load_trained_model(config: Config, tokenizer: PreTrainedTokenizerBase, checkpoint_dir: str | Path | None,
                       upstream: dict | None = None):
    """The regime's model with the weights of a checkpoint (or as built, for `upstream`)."""
    model, _ = build_model(config, tokenizer, upstream)
    if checkpoint_dir is not None:
        model.load_state_dict(load_checkpoint(checkpoint_dir)["model"])
    return model


def make_optimizer(model: torch.nn.Module, config: Config, total_steps: int):
    """AdamW over the parameters the regime leaves trainable, with linear warm-up then linear decay."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def training_step(model, batch: dict, optimizer, scheduler, config: Config, device: torch.device) -> tuple[float, int]:
    """One optimizer step on one batch; returns (loss, real target tokens). A non-finite loss is returned
    without stepping, for the caller to end the trial as diverged."""
    batch = {k: v.to(device) for k, v in batch.items()}
    with autocast(device):
        loss = model(**batch).loss  # mean over real target tokens: labels of -100 are ignored
    if not torch.isfinite(loss):
        return float("nan"), 0
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), int((batch["labels"] != -100).sum())


def fit(config: Config, data: PreparedData, report: Report, resume_from: str | Path | None = None) -> dict:
    """Train and evaluate one trial of `config.regime`; returns the last reported metrics."""
    config.validate()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = pick_device(config.device)
    regime = get_regime(config.regime)
    random.seed(config.seed)
    np.random.seed(config.seed)
    model, counts = build_model(config, data.tokenizer, data.upstream)  # seeds torch with config.seed
    model.to(device)

    def validate() -> dict:
        return evaluate(model, data.validation, data.tokenizer, config, device)[0]

    if not regime.trains:  # upstream: one zero-shot evaluation, nothing to resume
        start = time.perf_counter()
        metrics = {**validate(), "epoch": 0, "train_loss": float("nan"), "lr": 0.0, "train_tokens_per_s": 0.0,
                   "diverged": False, **counts}
        metrics["epoch_time_s"] = time.perf_counter() - start
        report(metrics, None)
        return metrics

    steps_per_epoch = len(make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True,
                                      seed=config.seed))
    optimizer, scheduler = make_optimizer(model, config, steps_per_epoch * config.epochs)
    first_epoch = 1
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        first_epoch = state["epoch"] + 1
        log.info("resumed from %s at epoch %d", resume_from, first_epoch)

    metrics: dict = {}
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        loss_sum, tokens = 0.0, 0
        # The batch order depends only on (seed, epoch): a resumed trial sees the batches it would have seen.
        for batch in make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True,
                                 seed=config.seed, epoch=epoch):
            loss, n = training_step(model, batch, optimizer, scheduler, config, device)
            if not math.isfinite(loss):
                log.warning("non-finite loss at epoch %d (lr %g): trial diverged", epoch, config.lr)
                metrics = {"epoch": epoch, "diverged": True, "train_loss": float("nan"), "val_loss": float("nan"),
                           "val_ppl": float("nan"), "val_bleu": 0.0, "val_chrf": 0.0, "val_exact_match": 0.0,
                           "lr": scheduler.get_last_lr()[0], "epoch_time_s": time.perf_counter() - start,
                           "train_tokens_per_s": 0.0, **counts}
                report(metrics, None)
                return metrics
            loss_sum += loss * n
            tokens += n
        train_time = time.perf_counter() - start
        metrics = {**validate(), "epoch": epoch, "train_loss": loss_sum / max(tokens, 1),
                   "lr": scheduler.get_last_lr()[0], "train_tokens_per_s": tokens / train_time,
                   "epoch_time_s": time.perf_counter() - start, "diverged": False, **counts}

        def save(directory: Path, epoch: int = epoch) -> None:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch, "rng": _rng_state(),
                        "data_order": {"seed": config.seed, "next_epoch": epoch + 1},
                        "config": config.to_dict()}, Path(directory) / CHECKPOINT_FILE)

        report(metrics, save)
    return metrics
