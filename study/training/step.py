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

# Steps between reads of a `StepTally` (one host sync each; a tenth of a shorter epoch: `loop.read_interval`):
# the progress display's loss, and how soon a non-finite loss ends a trial. A read drains the GPU's queue once;
# every 50 steps that costs a host-bound epoch a few per cent at most, and a diverged trial runs at most 49
# wasted steps.
READ_EVERY = 50
# With `--compile`, batches are padded to a multiple of this many tokens (each side), so that the compiled
# forward meets a few static shapes — 3 x 3 at the 96-token limits, x 2 for an epoch's last, smaller batch —
# each compiled once, instead of one per batch length. Padding never changes the loss: padded label positions
# are -100 and padded source positions are masked.
COMPILE_PAD = 32


def optimizer_options(device: torch.device) -> dict:
    """AdamW's implementation for parameters on `device`: the fused kernel on CUDA and the CPU (every parameter
    updated in one pass, a few kernel launches); torch's default elsewhere. On the CPU torch's default is
    neither fused nor foreach but a Python loop of ~9 small ops per parameter: an optimizer step of the tiny
    model took 76 ms that way, 101 ms foreach and 4.9 ms fused; of t5-small 1.4 s, 3.7 s and 0.52 s (2 threads,
    a loaded machine: ratios only). transformers' Trainer has defaulted to the fused kernel since torch 2.8: the
    one difference a side-by-side profile found between its step and the project's (docs/performance.md)."""
    return {"fused": True} if device.type in ("cuda", "cpu") else {}


def compile_forward(model: torch.nn.Module, shapes: int = 32, backend: str = "inductor"):
    """`model`'s forward and loss through `torch.compile` with static shapes (`--compile`): what a training step
    calls instead of `model`; the model itself stays eager for generation and its state_dict keeps its keys.
    `shapes`: how many distinct batch shapes it may meet (`COMPILE_PAD`); each compiles once, and torch's
    default of 8 recompiles would drop the rest back to eager."""
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, shapes)
    return torch.compile(model, dynamic=False, backend=backend)


def make_optimizer(model: torch.nn.Module, config: Config, total_steps: int):
    """AdamW over the parameters the regime leaves trainable, with linear warm-up then linear decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **optimizer_options(device))
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


def training_step(model, batch: dict, optimizer, scheduler, config: Config, device: torch.device,
                  forward=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch; returns (loss, real target tokens) as tensors on `device`, unread.

    `forward`: what computes the loss, `model` unless given (`compile_forward`'s, with `--compile`).
    A non-finite loss is stepped like any other: the caller finds it at its next read and ends
    the trial as diverged; the steps in between only touch a model that is then thrown away."""
    if device.type == "cuda":  # from pinned memory the copy is queued, and the host goes on at once
        batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    else:
        batch = {k: v.to(device) for k, v in batch.items()}
    with autocast(device, config.precision):
        loss = (model if forward is None else forward)(**batch).loss  # mean over real target tokens: labels of -100 are ignored
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
