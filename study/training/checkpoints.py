"""A trial's checkpoint: model, optimizer, scheduler, epoch and RNG state, enough to resume it exactly.

The batch order depends only on (seed, epoch), so model + optimizer + scheduler + RNG state at the end
of epoch k are all a resumed trial needs to match an uninterrupted one.

Checkpoints travel with studies (a colleague's results folder, a shared bucket), so a checkpoint is
plain data: tensors, numbers, strings, lists and dicts, read back with `torch.load(weights_only=True)`,
which refuses anything else instead of running it. Python's and NumPy's RNG states are the only parts
that are not plain data as they come, so they are converted to lists of ints here and back on load.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from study.common import write_atomic
from study.config import Config, StudyError
from study.model.regimes import build_model

CHECKPOINT_FILE = "state.pt"
# What a resumed trial needs beyond the model; a checkpoint kept only for test scoring drops these.
RESUME_KEYS = ("optimizer", "scheduler", "rng")


def rng_state() -> dict:
    """Python's, NumPy's, torch's (and CUDA's) RNG states as plain data: ints, lists of ints, tensors."""
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"bit_generator": name, "key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    np.random.set_state((numpy["bit_generator"], np.asarray(numpy["key"], dtype=np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, *, model, optimizer, scheduler, epoch: int, config: Config) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "rng": rng_state(),
             "data_order": {"seed": config.seed, "next_epoch": epoch + 1},
             "config": config.to_dict()}
    write_atomic(Path(directory) / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def has_checkpoint(directory: str | Path | None) -> bool:
    return directory is not None and (Path(directory) / CHECKPOINT_FILE).is_file()


def load_checkpoint(directory: str | Path) -> dict:
    """The checkpoint in `directory`, parsed as plain data: a file that would need to run code is refused."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise StudyError(f"no checkpoint at {path} (the study's checkpoint policy removes those of ended "
                         f"trials; pass --keep-checkpoints to keep them)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise StudyError(f"refusing to load {path}: it is not a plain-data checkpoint, and unpickling it "
                         f"could run code from the file; delete it, or re-run its trial to write a "
                         f"new one") from err


def load_for_resume(directory: str | Path) -> dict:
    """A checkpoint that can continue its trial (one kept only for scoring has no optimizer state)."""
    state = load_checkpoint(directory)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise StudyError(f"the checkpoint in {directory} holds no {', '.join(missing)} state (its trial ended "
                         f"and it was kept for scoring only), so it cannot be resumed; start the trial afresh")
    return state


def strip_to_model(directory: str | Path) -> None:
    """Rewrite the checkpoint in `directory` keeping the model and its bookkeeping, without what only a
    resume needs (optimizer, scheduler, RNG): for an ended trial that is kept for scoring or export."""
    state = load_checkpoint(directory)
    kept = {key: value for key, value in state.items() if key not in RESUME_KEYS}
    write_atomic(Path(directory) / CHECKPOINT_FILE, lambda tmp: torch.save(kept, tmp))


def load_trained_model(config: Config, tokenizer: PreTrainedTokenizerBase, checkpoint_dir: str | Path | None,
                       upstream: dict | None = None):
    """The regime's model with the weights of a checkpoint (or as built, for `upstream`)."""
    model, _ = build_model(config, tokenizer, upstream)
    if checkpoint_dir is not None:
        model.load_state_dict(load_checkpoint(checkpoint_dir)["model"])
    return model
