"""One optimizer step: backward, clip, step, schedule. Fine-tuning and the upstream's pretraining share it."""

from __future__ import annotations

import torch


def optimizer_step(model: torch.nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler,
                   max_grad_norm: float) -> None:
    """Backpropagate `loss`, clip the gradients' global norm, step the optimizer and the lr schedule."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
