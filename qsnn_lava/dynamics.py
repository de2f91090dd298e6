"""Loihi 2's fixed-point CUBA LIF neuron and Dense synapse, exactly as Lava's bit-accurate models compute them.

This module is the single source of truth for the integer arithmetic. It is used by
  * the torch model's eval/deploy forward (int64 tensors),
  * the batched reference simulator (int64 tensors),
  * the torch model's training forward (float64 tensors holding integers),
and the Lava backend is checked against it.

Source: lava-nc 0.10.0, ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``) and
``lava/proc/dense/models.py`` (``AbstractPyDenseModelBitAcc``). Per time step, for one neuron:

    a   = (sum_j w_ij * s_j) << weight_exp            (>> -weight_exp if negative: floor)
    u   = wrap24( rtz(u * (4096 - (du + 1)) / 4096) + (a << 6) )
    v   = sat24(  rtz(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp) )
    s   = v > (vth << 6)                               (strict)
    v   = 0 where s                                    (u is never reset)
    v   = clip(v >> q, -2^(b-1), 2^(b-1) - 1) << q    (only the qmem neuron: mem_bits = b > 0, mem_shift = q)

The last line is ours, not Loihi's: the ``qmem`` neuron stores its voltage as a b-bit saturating
integer (b = 2..8) at bit position q (>> is arithmetic: floor). Loihi 2 has no such storage; it runs
on CPU in Lava only (converters.qmem_lava).

rtz rounds toward zero; wrap24 maps (2^23, ...) down by 2^24 and (..., -2^23] up by 2^24, once, as
Lava does (so +2^23 itself survives); sat24 clips to +-(2^23 - 1). "Zero-delay" time is used here:
a layer at step t sees the spikes its source emitted at step t. Lava's one-step-per-synapse delay is
handled in exactly one place, the Lava backend.

Two number types, one code path: with int64 tensors every operation is exact integer arithmetic.
The integer path also runs unchanged on numpy int64 arrays (``_xp`` picks numpy or torch by type),
which is how the Lava process of converters.qmem_lava computes without a second copy of this code.
With float64 tensors holding integer values the forward values are bit-identical (all intermediate
magnitudes stay far below 2^53), rounding passes gradients straight through and the spike uses a
triangular surrogate gradient; that is how training sees exactly the arithmetic it will be deployed on.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096: du/dv are 12-bit fractions of this
ACT_SHIFT = 6  # synaptic input is MSB-aligned by 6 bits
VTH_SHIFT = 6  # so is the threshold
UV_BITS = 24
UV_MAX = 1 << (UV_BITS - 1)  # 2^23
V_LIMIT = UV_MAX - 1


class LIFParams(NamedTuple):
    """Integer parameters of a CUBA LIF population, in Lava's names and units.

    vth: threshold mantissa (compared against v as vth << 6); du, dv: 12-bit decays
    (du = 4095 keeps no current, dv = 0 keeps all voltage); bias: the effective bias
    ``bias_mant << bias_exp`` per neuron (a tensor broadcastable to the population).
    """

    vth: int
    du: int
    dv: int
    bias: torch.Tensor | int = 0
    can_wrap: bool = True  # False only where a bound proves |u| never exceeds 2^23 (skips the wrap)
    can_saturate: bool = True  # likewise for v and the saturation
    mem_bits: int = 0  # 0: full 24-bit membrane; 2..8: v is stored in mem_bits bits (see store_membrane)
    mem_shift: int = 0  # position of the stored bits in v (see store_membrane and qmem_shift)


class LIFState(NamedTuple):
    """State of a CUBA LIF population: current ``u`` and voltage ``v`` in internal units (64 per weight-mantissa
    unit, 24-bit), as int64 tensors, float tensors holding integers, or numpy int64 arrays."""

    u: torch.Tensor
    v: torch.Tensor


def effective_bias(bias_mant, bias_exp: int):
    """``bias_mant << bias_exp`` (arithmetic >> for a negative exponent), as Lava's scale_bias.

    A numpy ``bias_mant`` gives a numpy int64 array, and then ``bias_exp`` may also be per neuron.
    """
    if isinstance(bias_mant, np.ndarray):
        b, e = bias_mant.astype(np.int64), np.asarray(bias_exp, np.int64)
        return np.where(e >= 0, b << np.maximum(e, 0), b >> np.maximum(-e, 0))
    b = torch.as_tensor(bias_mant, dtype=torch.int64)
    return b << bias_exp if bias_exp >= 0 else b >> (-bias_exp)


def _xp(x):
    """The array module of ``x``: torch for tensors, numpy for everything else (int64 arrays)."""
    return torch if isinstance(x, torch.Tensor) else np


def _is_float(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def rtz_decay(x: torch.Tensor, decay: int) -> torch.Tensor:
    """``rtz(x * (4096 - decay) / 4096)``: the decay product rounded toward zero."""
    keep = DECAY_UNITY - decay
    xp = _xp(x)
    if keep == 0:  # full decay (e.g. du = 4095): nothing is kept
        return xp.zeros_like(x)
    if keep == DECAY_UNITY:  # no decay
        return x
    if _is_float(x):
        y = x * (keep / DECAY_UNITY)  # exact: keep/4096 is a dyadic fraction, |x*keep| < 2^36
        return y + (torch.trunc(y) - y).detach()
    prod = x * keep  # int64: |u * keep| < 2^35
    if xp is torch:  # one fused op, twice as fast as the numpy form below, the same values
        return torch.div(prod, DECAY_UNITY, rounding_mode="trunc")
    return np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)  # as Lava: sign(p) * (|p| >> 12)


def wrap_u(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of the current: one conditional shift by 2^24 either way."""
    xp = _xp(u)
    w = xp.where(u > UV_MAX, u - 2 * UV_MAX, u)
    return xp.where(w <= -UV_MAX, u + 2 * UV_MAX, w)


def saturate_v(v: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit saturation of the voltage: ``v`` clipped to [-(2^23 - 1), 2^23 - 1] (tensor or numpy
    array)."""
    return _xp(v).clip(v, -V_LIMIT, V_LIMIT)


class _SpikeFn(torch.autograd.Function):
    """Heaviside of ``x > 0`` forward; triangular surrogate ``max(1 - |x|/w, 0) / w`` backward."""

    @staticmethod
    def forward(ctx, x, width):
        ctx.save_for_backward(x)
        ctx.width = width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        w = ctx.width
        return grad * (1.0 - x.abs() / w).clamp(min=0.0) / w, None


def fire(v: torch.Tensor, vth) -> torch.Tensor:
    """Spikes (0/1 in v's dtype) where ``v > vth << 6``; surrogate of width ``vth << 6`` when training.

    ``vth`` is an int, or (training a learned threshold) a float tensor holding an integer, which then
    receives the surrogate gradient through ``v - (vth << 6)``."""
    if _is_float(v):
        thr = vth * (1 << VTH_SHIFT)  # exact: an integer times 64
        return _SpikeFn.apply(v - thr, max(float(thr.detach()) if isinstance(thr, torch.Tensor) else float(thr), float(1 << VTH_SHIFT)))
    thr = vth << VTH_SHIFT
    s = v > thr
    return s.to(v.dtype) if isinstance(s, torch.Tensor) else s.astype(v.dtype)


def qmem_shift(vth: int, mem_bits: int) -> int:
    """The smallest ``q >= 0`` with ``((2^(mem_bits-1) - 1) << q) >= (vth << 6)``: the finest mem_shift
    at which the top stored level reaches the threshold (0 <= q <= 23 for Lava's 17-bit vth)."""
    _check_mem_bits(mem_bits)
    top, thr = (1 << (mem_bits - 1)) - 1, int(vth) << VTH_SHIFT
    q = 0
    while (top << q) < thr:
        q += 1
    return q


MEM_BITS_RANGE = (2, 8)
MEM_SHIFT_MAX = UV_BITS - 1  # keeps every stored v inside 24-bit two's complement, [-2^23, 2^23 - 1]


def _check_mem_bits(mem_bits: int) -> None:
    if not MEM_BITS_RANGE[0] <= mem_bits <= MEM_BITS_RANGE[1]:
        raise ValueError(f"mem_bits must be in {MEM_BITS_RANGE[0]}..{MEM_BITS_RANGE[1]} (0 = full 24-bit "
                         f"membrane), got {mem_bits}")


def store_membrane(v, mem_bits: int, mem_shift: int):
    """Store the voltage in ``mem_bits`` bits:
    ``v = clip(v >> mem_shift, -2^(mem_bits-1), 2^(mem_bits-1) - 1) << mem_shift``.

    ``>>`` is the arithmetic shift (floor, also for negative v: -5 >> 1 == -3). ``mem_bits`` is 2..8
    (0 returns v unchanged: the full 24-bit membrane), ``mem_shift`` 0..23. Works on numpy int64 arrays,
    int64 tensors and float tensors holding integers; for floats the values are bit-identical, the
    floor passes its gradient straight through and the clip has gradient 0 outside its range.
    """
    if mem_bits == 0:
        return v
    _check_mem_bits(mem_bits)
    if not 0 <= mem_shift <= MEM_SHIFT_MAX:
        raise ValueError(f"mem_shift must be in 0..{MEM_SHIFT_MAX}, got {mem_shift}")
    lo, hi = -(1 << (mem_bits - 1)), (1 << (mem_bits - 1)) - 1
    if _is_float(v):
        y = v * (2.0 ** -mem_shift)  # exact: a power of two
        y = y + (torch.floor(y) - y).detach()
        # the clip's gradient is 1 on [lo, hi] (bounds included) and 0 outside, spelled out rather than
        # left to torch's clamp, whose gradient at the bounds changed between versions
        inside = ((y >= lo) & (y <= hi)).to(y.dtype).detach()
        return (y.detach().clamp(lo, hi) + (y - y.detach()) * inside) * (2.0 ** mem_shift)
    return _xp(v).clip(v >> mem_shift, lo, hi) << mem_shift


def lif_step(a: torch.Tensor, state: LIFState, p: LIFParams, counts: dict | None = None,
             probe: dict | None = None) -> tuple[torch.Tensor, LIFState]:
    """One time step of the CUBA LIF for synaptic input ``a`` (integer units before the << 6).

    ``a`` and the state are int64 tensors, float tensors holding integers, or numpy int64 arrays (then
    ``p.bias`` is an int or a numpy array). With ``p.mem_bits > 0`` the voltage is stored after the
    reset: ``v = store_membrane(v, p.mem_bits, p.mem_shift)`` (the ``qmem`` neuron).

    If ``counts`` is a dict, the number of u wraps and v saturations of this step are added to its
    ``"u_wraps"`` and ``"v_saturations"`` entries. If ``probe`` is a dict, its ``"v_pre_reset"`` is set
    to this step's voltage before the spike's reset (what QP-SNN's SCA pruning score measures).
    """
    u = rtz_decay(state.u, p.du + 1) + a * (1 << ACT_SHIFT)
    if p.can_wrap:
        u_raw, u = u, wrap_u(u)
        if counts is not None:
            counts["u_wraps"] = counts.get("u_wraps", 0) + int((u != u_raw).sum())
    v = rtz_decay(state.v, p.dv) + u + p.bias
    if p.can_saturate:
        v_raw, v = v, saturate_v(v)
        if counts is not None:
            counts["v_saturations"] = counts.get("v_saturations", 0) + int((v != v_raw).sum())
    if probe is not None:
        probe["v_pre_reset"] = v
    s = fire(v, p.vth)
    v = v * (1 - s)  # hard reset of v only
    if p.mem_bits:
        v = store_membrane(v, p.mem_bits, p.mem_shift)
    return s, LIFState(u, v)


def lif_init(shape, like: torch.Tensor) -> LIFState:
    """The zero state (u = v = 0) of a population of ``shape``, with the dtype and device of tensor ``like``."""
    z = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return LIFState(z, z.clone())


def lif_run(a: torch.Tensor, p: LIFParams, trace: bool = False, counts: dict | None = None):
    """Run the LIF over time-major input ``a`` [T, ...]; returns spikes [T, ...] (and u, v traces)."""
    state = lif_init(a.shape[1:], a)
    spikes = torch.empty_like(a)
    us, vs = (torch.empty_like(a), torch.empty_like(a)) if trace else (None, None)
    for t in range(a.shape[0]):
        s, state = lif_step(a[t], state, p, counts)
        spikes[t] = s
        if trace:
            us[t], vs[t] = state.u, state.v
    return (spikes, us, vs) if trace else spikes


def shift_exp(acc: torch.Tensor, weight_exp: int) -> torch.Tensor:
    """Apply the per-layer weight exponent to an accumulated sum (floor for negative exponents)."""
    if weight_exp == 0:
        return acc
    if acc.is_floating_point():
        y = acc * (2.0 ** weight_exp)
        return y if weight_exp > 0 else y + (torch.floor(y) - y).detach()
    return acc << weight_exp if weight_exp > 0 else acc >> (-weight_exp)


# Partial sums of integer weights times integer inputs are exact in float32 below 2^24, float64 below 2^53.
_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53


def input_max(spikes: torch.Tensor) -> int:
    """The largest |value| of an integer input tensor: 1 for 0/1 spikes, up to 2^b - 1 for b-bit graded input
    (direct input), 0 when empty. It scales the accumulate bound below."""
    return int(spikes.abs().max()) if spikes.numel() else 0


def _exact_float(bound: int):
    """The float type whose sums are exact for partial sums bounded by ``bound``: float32 below 2^24, float64
    below 2^53, None beyond (then int64)."""
    return torch.float32 if bound < _F32_EXACT else torch.float64 if bound < _F64_EXACT else None


def dense_accumulate(spikes: torch.Tensor, weight: torch.Tensor, weight_exp: int = 0,
                     max_in: int | None = None) -> torch.Tensor:
    """Synaptic input ``(spikes @ weight.T)`` shifted by ``weight_exp``; spikes [..., n_in], weight [n_out, n_in].

    ``spikes`` are 0/1 spikes or graded integer payloads (direct input). Integer weights are summed with a
    BLAS matmul, which is exact because every partial sum is bounded by ``max_i sum_j |w_ij| * max_in``
    (``max_in``: the largest |input|, measured by ``input_max`` when None): float32 when that bound is below
    2^24, float64 below 2^53, else int64.
    """
    if weight.is_floating_point():
        return shift_exp(spikes.to(weight.dtype) @ weight.t(), weight_exp)
    row = int(weight.abs().sum(dim=1).max()) if weight.numel() else 0
    ftype = _exact_float(row * (input_max(spikes) if max_in is None else int(max_in)))
    if ftype is not None:
        acc = (spikes.to(ftype) @ weight.t().to(ftype)).to(torch.int64)
    else:  # pragma: no cover - needs absurd weights; stay exact anyway
        acc = spikes.to(torch.int64) @ weight.t()
    return shift_exp(acc, weight_exp)


def conv_accumulate(spikes: torch.Tensor, weight: torch.Tensor, stride=(1, 1), padding=(0, 0), groups: int = 1,
                    weight_exp: int = 0, max_in: int | None = None) -> torch.Tensor:
    """Synaptic input of a Conv synapse: ``conv2d(spikes, weight)`` (cross-correlation, zero padding),
    shifted by ``weight_exp``; spikes [..., C, H, W] -> [..., C_out, H_out, W_out].

    Exact for integer weights by the same argument as ``dense_accumulate``: every partial sum is bounded
    by the largest per-channel sum of |w| times ``max_in`` (the largest |input|, measured when None), so
    float32 convolution is exact below 2^24, float64 below 2^53.
    """
    import torch.nn.functional as F

    lead = spikes.shape[:-3]
    x = spikes.reshape(-1, *spikes.shape[-3:])
    if weight.is_floating_point():
        acc = F.conv2d(x.to(weight.dtype), weight, stride=tuple(stride), padding=tuple(padding), groups=groups)
    else:
        row = int(weight.abs().flatten(1).sum(1).max()) if weight.numel() else 0
        ftype = _exact_float(row * (input_max(x) if max_in is None else int(max_in)))
        if ftype is None:  # pragma: no cover - absurd weights
            raise ValueError("conv weights times inputs too large for an exact float convolution")
        acc = F.conv2d(x.to(ftype), weight.to(ftype), stride=tuple(stride), padding=tuple(padding),
                       groups=groups).to(torch.int64)
    return shift_exp(acc.reshape(*lead, *acc.shape[1:]), weight_exp)
