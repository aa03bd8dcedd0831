"""The training step: the optimizer, one optimizer step, and the step's loss and token count left on the device.

Fine-tuning (`study.training.loop.fit`), the upstream's pretraining and the benchmarks share it. It imports
torch, transformers and `study.model.device` only, so that `benchmarks/gpu_check.py` runs the very step a trial
runs on a machine without datasets, Ray or Optuna.

No host sync inside a step: reading a device tensor on the host (`.item()`, `bool()`, `float()`, `.tolist()`)
makes the CPU wait until the GPU has run everything queued, so it cannot queue the next step's kernels while
the GPU computes this one. A step returns its loss and real-token count as device tensors; `StepTally` keeps
them and the loop reads them all in one copy once per logging interval (`READ_EVERY` steps) and at the epoch's end.
"""

from __future__ import annotations

import torch
from transformers import get_linear_schedule_with_warmup

from study.config import Config
from study.model.device import autocast

# Steps between reads of a `StepTally` (one host sync each): the progress bar's loss, and how soon a non-finite
# loss ends a trial. A read drains the GPU's queue once; every 50 steps that costs a host-bound epoch a few
# per cent at most, and a diverged trial runs at most 49 wasted steps.
READ_EVERY = 50


def make_optimizer(model: torch.nn.Module, config: Config, total_steps: int):
    """AdamW over the parameters the regime leaves trainable, with linear warm-up then linear decay."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def optimizer_step(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler,
                   max_grad_norm: float) -> None:
    """Backpropagate `loss`, clip the gradients' global norm, step the optimizer and the lr schedule."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def training_step(model, batch: dict, optimizer, scheduler, config: Config,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch; returns (loss, real target tokens) as tensors on `device`, unread.

    A non-finite loss is stepped like any other: the caller finds it at its next read and ends
    the trial as diverged; the steps in between only touch a model that is then thrown away."""
    if device.type == "cuda":  # from pinned memory the copy is queued, and the host goes on at once
        batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    else:
        batch = {k: v.to(device) for k, v in batch.items()}
    with autocast(device, config.precision):
        loss = model(**batch).loss  # mean over real target tokens: labels of -100 are ignored
    optimizer_step(model, loss, optimizer, scheduler, config.max_grad_norm)
    return loss.detach(), (batch["labels"] != -100).sum()


class StepTally:
    """The losses and real-token counts of the steps since the last `read`, kept on the device."""

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._tokens: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, tokens: torch.Tensor) -> None:
        self._losses.append(loss)
        self._tokens.append(tokens)

    def __len__(self) -> int:
        return len(self._losses)

    def read(self) -> list[tuple[float, int]]:
        """(loss, tokens) of each step since the last read, in step order, in one device-to-host copy. The
        losses come back as the floats `loss.item()` gives (fp32 widened to fp64 exactly), so sums over them are
        what per-step reads would have summed."""
        if not self._losses:
            return []
        values = torch.stack([torch.stack(self._losses).double(), torch.stack(self._tokens).double()]).tolist()
        self._losses, self._tokens = [], []
        return [(loss, int(tokens)) for loss, tokens in zip(*values)]
