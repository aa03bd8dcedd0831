"""Where a trial runs and in which precision: the device, and bf16 autocast where the hardware has it."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device: torch.device):
    """bf16 autocast where the hardware has it (CUDA with bf16); full precision elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
