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

rescaw (QP-SNN ReScaW, Eqs. 9-10): the uniform quantizer applied to W / gamma, gamma detached and per
layer: the 1-norm mean ||W||_1 / |W| (the paper's default and best), max |W|, or the percentile max.
The levels are the same odd mantissas; gamma only decides which latent weights land on which level.
The network is trained and deployed in mantissa units, so ``theta`` is given in units of gamma:
vth = theta * s, and the real threshold gamma * vth / s moves with gamma exactly as the real weights do;
the integer network does not depend on the scale. (The paper's public code computes gamma per
output channel; one vth per layer on Loihi cannot follow per-channel scales exactly, so we use per layer.)

sigmoid / ternary (sigmoid-sum quantizer, Shymyrbay et al. IJCNN 2023, in the form of Quantization
Networks, Yang et al. CVPR 2019; see ``SigmoidSum``): a learned, differentiable staircase while training
and the hard step function at inference, whose outputs are the integer mantissas.

Bit-width utilisation (Eq. 8): R = (levels actually used) / 2^b, per layer (``utilisation``).
"""
from __future__ import annotations

import math

import torch

from .errors import QsnnError

def ste_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward (half to even), identity gradient backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def uniform(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """QP-SNN uniform quantizer; returns (odd integer mantissas with STE, unit = 1 / (2^b - 1))."""
    s = (1 << bits) - 1
    w_int = ste_round(s / 2 * (w.clamp(-1.0, 1.0) + 1.0))
    return 2 * w_int - s, 1.0 / s


def rescaw_gamma(w: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """ReScaW's gamma (detached): 1-norm mean (default), max |W|, or the 99th-percentile max."""
    a = w.detach().abs()
    if mode == "mean":
        g = a.mean()
    elif mode == "max":
        g = a.max()
    elif mode == "percentile":
        flat = w.detach().flatten()
        g = torch.maximum(flat.quantile(0.99).abs(), flat.quantile(0.01).abs())
    else:
        raise QsnnError(f"unknown ReScaW gamma '{mode}' (known: mean, max, percentile)")
    return g.clamp(min=1e-8)


def rescaw(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """QP-SNN ReScaW: uniform levels over [-gamma, gamma], gamma = ||W||_1 / |W| (detached)."""
    return uniform(w / rescaw_gamma(w), bits)


def utilisation(mantissas: torch.Tensor, bits: int) -> float:
    """QP-SNN Eq. 8: fraction of the 2^b levels that the layer's weights actually use."""
    return len(torch.unique(mantissas.detach().round())) / float(1 << bits)


class SigmoidSum(torch.nn.Module):
    """Sigmoid-sum quantizer with integer output levels.

    training:  y = sum_i s_i * sigmoid(T * (beta * w - b_i)) - o
    inference: y = sum_i s_i * step(beta * w - b_i) - o          (step(0) = 1)
    Levels: binary {-1, +1} (bits = 1); ternary {-1, 0, +1}; otherwise the 2^b odd integers in
    [-(2^b - 1), 2^b - 1], so the hard outputs are Loihi weight mantissas directly. s_i are the level
    gaps, o = (sum s_i) / 2 centres the output, and the b_i sit midway between levels. beta is learned per
    layer, initialised to (5/4) p / q (p = largest level, q = max |W|) as in Quantization Networks; their
    alpha only rescales the real weights, which the integer network does not see, so it is not kept.
    The temperature follows their schedule T = min((epoch + 1) * T0, 2000), set by ``set_epoch``.
    """

    T_MAX = 2000.0

    def __init__(self, bits: int, w_init: torch.Tensor, ternary: bool = False, t0: float = 1.0):
        super().__init__()
        if ternary:
            levels = torch.tensor([-1.0, 0.0, 1.0])
        else:
            top = (1 << bits) - 1
            levels = torch.arange(-top, top + 1, 2, dtype=torch.float32)
        self.register_buffer("gaps", levels[1:] - levels[:-1])
        self.register_buffer("offsets", (levels[1:] + levels[:-1]) / 2)
        self.register_buffer("temperature", torch.tensor(float(t0)))
        self.t0 = float(t0)
        self.max_level = float(levels[-1])
        q = float(w_init.detach().abs().max().clamp(min=1e-8))
        self.beta = torch.nn.Parameter(torch.tensor(1.25 * self.max_level / q))

    def set_epoch(self, epoch: int) -> None:
        """Set the temperature for 0-based ``epoch``: ``T = min((epoch + 1) * t0, 2000)``."""
        self.temperature.fill_(min((epoch + 1) * self.t0, self.T_MAX))

    def forward(self, w: torch.Tensor, hard: bool) -> torch.Tensor:
        """Mantissas of latent weights ``w`` (any shape): the hard step outputs, integer levels, when ``hard``
        (inference); else the soft sigmoid staircase at the current temperature (training)."""
        z = (self.beta * w).unsqueeze(-1) - self.offsets
        steps = (z >= 0).to(w.dtype) if hard else torch.sigmoid(self.temperature * z)
        return (steps * self.gaps).sum(-1) - self.gaps.sum() / 2


QUANTIZERS = {"uniform": uniform, "rescaw": rescaw}  # stateless: latent weights -> mantissas
SIGMOID_QUANTS = ("sigmoid", "ternary")  # learned state: a SigmoidSum module per layer
QUANT_NAMES = (*QUANTIZERS, *SIGMOID_QUANTS)


def quantize(name: str, w: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """The stateless quantizer ``name`` ("uniform" or "rescaw") at ``bits`` bits: (mantissas of ``w`` with
    straight-through gradients, real value of one mantissa unit). QsnnError for an unknown name or ReScaW
    at 1 bit."""
    if name not in QUANTIZERS:
        raise QsnnError(f"unknown quantizer '{name}' (known: {', '.join(QUANTIZERS)})")
    if name == "rescaw" and bits < 2:
        raise QsnnError("ReScaW needs at least 2 bits: at 1 bit the two levels +-gamma carry no scale "
                        "information (use --quant sigmoid for binary weights)")
    return QUANTIZERS[name](w, bits)


def threshold_mantissa(theta: float, unit: float, where: str) -> int:
    """The integer threshold ``theta / unit``; refuses when it is not an integer (no silent rounding)."""
    x = theta / unit
    vth = round(x)
    if not math.isclose(x, vth, rel_tol=0, abs_tol=1e-6) or vth < 0:
        raise QsnnError(f"{where}: threshold {theta} is {x:.6f} weight units, not a whole number; "
                        "choose theta as a multiple of the weight unit")
    return vth
