"""Where a trial runs and in which precision: the device, and bf16 autocast where the hardware has it.

Autocast runs the matmuls in bf16 while the weights, gradients and optimizer state stay fp32, so
turning it on or off never changes what a checkpoint holds.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from study.config import StudyError

PRECISIONS = ("auto", "fp32", "bf16")
# CPU instruction sets that compute bf16 natively (AVX512-BF16, AMX); without them bf16 is emulated
# and slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# `auto` uses bf16 on such a CPU only where a step's matmuls are big enough to gain from it: batch size x
# d_model at least this much. Small matmuls gain nothing from bf16 and pay for the casts. Measured on an idle
# 2-core avx512_bf16/AMX machine, the project's step, bf16 over fp32 (docs/performance.md, "bf16 on CPU"): the
# tiny model (d_model 128) at batch 16 (2,048) 0.83x, at batch 64 (8,192) 1.09x on the bundled corpus and
# 1.15x on fra.txt; t5-small (512) at batch 64 1.57x. So t5-small from batch 16 and the tiny model from batch
# 64 train in bf16. A rule on the trial's settings, not a timing: a timing taken while other processes load
# the machine would make a trial's precision, and so its results, depend on the load.
BF16_MIN_BATCH_WIDTH_ON_CPU = 8192


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU advertises native bf16 (Linux's CPU flags; elsewhere: no).

    A flag, not a timed matmul: a timing taken while other processes load the machine would make a
    trial's precision, and so its results, depend on the load."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = {word for line in text.splitlines() if line.startswith("flags") for word in line.split()}
    return bool(flags & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, width: int = 0, batch_size: int = 0) -> str:
    """`precision` made concrete (`fp32` or `bf16`) for `device`, a model of `width` (its d_model) and batches
    of `batch_size` pairs.

    `auto`: bf16 on CUDA GPUs that support it, and on CPUs with native bf16 where batch size x width reaches
    `BF16_MIN_BATCH_WIDTH_ON_CPU` (so the quick preset's tiny model at batch 16 stays fp32, and at 64 gains
    bf16); fp32 elsewhere, and wherever the width or batch size is not known (0).
    `bf16` is taken as asked wherever autocast supports it (a GPU without bf16 is refused)."""
    if precision not in PRECISIONS:
        raise StudyError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return "fp32"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if precision == "bf16":
            raise StudyError("precision bf16 was asked for but this GPU has no bf16; use --precision fp32")
        return "fp32"
    if precision == "bf16" or (cpu_has_native_bf16() and width * batch_size >= BF16_MIN_BATCH_WIDTH_ON_CPU):
        return "bf16"
    return "fp32"


def autocast_dtype(device: torch.device, precision: str = "auto", width: int = 0) -> torch.dtype | None:
    """The dtype autocast computes in, or None for full fp32 (see `resolve_precision`)."""
    return torch.bfloat16 if resolve_precision(precision, device, width) == "bf16" else None


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """bf16 autocast where `resolve_precision` says so; full precision elsewhere. Callers that know the
    model pass a resolved precision (`fit` does), so `auto` here only decides by the device."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
