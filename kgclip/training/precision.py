"""Mixed precision: bf16 autocast on GPU (no loss scaling needed), fp32 elsewhere."""

import contextlib

import torch


def use_bf16(precision: str, device: torch.device) -> bool:
    """True for ``bf16``, and for ``auto`` on a CUDA device."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass and the loss run under."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(precision, device))
