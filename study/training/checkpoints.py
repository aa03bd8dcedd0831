"""A trial's checkpoint: model, optimizer, scheduler, epoch and RNG state, enough to resume it exactly.

The batch order depends only on (seed, epoch), so model + optimizer + scheduler + RNG state at the end
of epoch k are all a resumed trial needs to match an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from study.config import Config
from study.model.regimes import build_model

CHECKPOINT_FILE = "state.pt"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, *, model, optimizer, scheduler, epoch: int, config: Config) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "rng": rng_state(),
                "data_order": {"seed": config.seed, "next_epoch": epoch + 1},
                "config": config.to_dict()}, Path(directory) / CHECKPOINT_FILE)


def has_checkpoint(directory: str | Path | None) -> bool:
    return directory is not None and (Path(directory) / CHECKPOINT_FILE).is_file()


def load_checkpoint(directory: str | Path) -> dict:
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def load_trained_model(config: Config, tokenizer: PreTrainedTokenizerBase, checkpoint_dir: str | Path | None,
                       upstream: dict | None = None):
    """The regime's model with the weights of a checkpoint (or as built, for `upstream`)."""
    model, _ = build_model(config, tokenizer, upstream)
    if checkpoint_dir is not None:
        model.load_state_dict(load_checkpoint(checkpoint_dir)["model"])
    return model
