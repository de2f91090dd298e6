"""Weight quantizers that produce integer mantissas directly.

A quantizer maps latent float weights to integer-valued mantissas ``m`` (float tensors with straight-
through gradients while training) and a real ``unit``: the deployed weight is ``m * unit``. Because
the network is trained and run in mantissa units, the threshold must be an integer number of units
too (``vth = theta / unit``); ``threshold_mantissa`` refuses when it is not.

uniform (QP-SNN Eqs. 4-6, Wei et al., ICLR 2025):
    s = 2^b - 1,  W_int = round(s/2 * (clamp(W, -1, 1) + 1)) in 0..s,  W_hat = 2 W_int / s - 1
In mantissas: m = 2 W_int - s, the odd integers in [-s, s] (2^b levels, no zero level), unit = 1/s.
Gradient: straight through the rounding, zero outside the clamp (dW_hat/dW = 1 for |W| <= 1).
For b = 8 the odd levels reach +-255, which needs 9 bits with mixed signs: not Loihi-legal; the IR
check refuses such a network, so train uniform at <= 7 bits.
"""
from __future__ import annotations

import math

import torch

from .errors import QsnnError

UNIFORM_BITS = (1, 2, 3, 4, 5, 6, 7, 8)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def uniform(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """QP-SNN uniform quantizer; returns (odd integer mantissas with STE, unit = 1 / (2^b - 1))."""
    s = (1 << bits) - 1
    w_int = ste_round(s / 2 * (w.clamp(-1.0, 1.0) + 1.0))
    return 2 * w_int - s, 1.0 / s


QUANTIZERS = {"uniform": uniform}


def quantize(name: str, w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    if name not in QUANTIZERS:
        raise QsnnError(f"unknown quantizer '{name}' (known: {', '.join(QUANTIZERS)})")
    return QUANTIZERS[name](w, bits)


def threshold_mantissa(theta: float, unit: float, where: str) -> int:
    """The integer threshold ``theta / unit``; refuses when it is not an integer (no silent rounding)."""
    x = theta / unit
    vth = round(x)
    if not math.isclose(x, vth, rel_tol=0, abs_tol=1e-6) or vth < 0:
        raise QsnnError(f"{where}: threshold {theta} is {x:.6f} weight units, not a whole number; "
                        "choose theta as a multiple of the weight unit")
    return vth
