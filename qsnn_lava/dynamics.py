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

import functools
import math
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
NO_FIRE_VTH = 1 << 40  # a threshold no 24-bit v reaches: a non-spiking readout (ir.Readout) in this module's terms


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
    if _is_float(x):  # exact: keep/4096 is a dyadic fraction, |x*keep| < 2^36 (float32: see exact_dtype)
        return _RtzDecay.apply(x, keep / DECAY_UNITY)
    prod = x * keep  # int64: |u * keep| < 2^35
    if xp is torch:  # one fused op, twice as fast as the numpy form below, the same values
        return torch.div(prod, DECAY_UNITY, rounding_mode="trunc")
    return np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)  # as Lava: sign(p) * (|p| >> 12)


class _RtzDecay(torch.autograd.Function):
    """``trunc(x * c)`` forward, ``grad * c`` backward (straight through the rounding): one autograd node for
    what ``y + (trunc(y) - y).detach()`` spells in four, the same values."""

    @staticmethod
    def forward(ctx, x, c):
        ctx.c = c
        return torch.trunc(x * c)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.c, None


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
        # grad * max(1 - |x| / w, 0) / w, the same roundings, in place on one temporary
        return x.abs().div_(w).neg_().add_(1.0).clamp_(min=0.0).mul_(grad).div_(w), None


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
    drive = a * (1 << ACT_SHIFT)
    u = drive if p.du + 1 == DECAY_UNITY else rtz_decay(state.u, p.du + 1) + drive  # du = 4095: no memory
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


def lif_run(a: torch.Tensor, p: LIFParams, trace: bool = False, counts: dict | None = None, dtype=None,
            inplace: bool = False):
    """Run the LIF over time-major input ``a`` [T, ...] from the zero state; returns spikes [T, ...] in ``a``'s
    dtype (and u, v traces).

    ``dtype`` picks the arithmetic. None: a float ``a`` is the training path (straight-through rounding,
    surrogate spikes, ``lif_step``); an integer ``a`` is exact, computed in ``exact_dtype``'s narrowest proven
    type. "exact": the same for an ``a`` of any dtype holding integers (the reference passes float32 sums).
    A torch dtype (float32, int32, int64) forces the fused exact loop in that type; ValueError where the bound
    does not prove it exact. torch.int64 with wrap, saturation or a stored membrane is the ``lif_step`` loop.
    The fused loop (``_lif_run_fused``) is ``lif_step``'s arithmetic with the wrap and saturation that the
    bound proves idle left out; it adds nothing to ``counts`` (the bound proves there is nothing to count).
    ``inplace``: ``a`` is the caller's scratch; the fused loop may overwrite it (its storage becomes the spikes).
    """
    if dtype is None and a.is_floating_point():  # training: wrap and saturation only where they can happen
        return _lif_run_steps(a, _limits_needed(p, a), trace, counts)
    if a.numel() == 0:
        return _lif_run_steps(a.to(torch.int64), p, trace, counts)
    b_max = _bias_max(p)
    proven = _proven_dtypes(p, max_abs(a), a.shape[0], b_max)
    if dtype is None or dtype == "exact":
        dtype = proven[0]
    elif dtype not in proven:
        raise ValueError(f"the LIF's bound does not prove {dtype} exact for this input (proven: {proven})")
    if dtype == torch.int64 and len(proven) == 1:  # wrap, saturation or a stored membrane: lif_step
        s = _lif_run_steps(a.to(torch.int64), p, trace, counts)
        return tuple(x.to(a.dtype) for x in s) if trace else s.to(a.dtype)
    return _lif_run_fused(a, p, dtype, trace, has_bias=b_max > 0, inplace=inplace)


def _limits_needed(p: LIFParams, a: torch.Tensor) -> LIFParams:
    """``p`` without the u wrap and v saturation where ``lif_bound`` proves that input ``a`` [T, ...] cannot
    reach them (the same values and gradients, two autograd nodes fewer per step)."""
    if not (p.can_wrap or p.can_saturate) or a.numel() == 0:
        return p
    u_max, v_max = lif_bound(math.ceil(max_abs(a.detach())), _bias_max(p), p.du, p.dv, a.shape[0])
    if u_max < V_LIMIT and v_max < V_LIMIT:
        return p._replace(can_wrap=False, can_saturate=False)
    return p


def _lif_run_steps(a: torch.Tensor, p: LIFParams, trace: bool, counts: dict | None):
    """``lif_step`` for every step of ``a`` [T, ...] (the training path and the general integer fallback).
    The steps are stacked at the end: writing each into a preallocated [T, ...] tensor would make autograd
    keep and zero-fill a full-size gradient per step."""
    state = lif_init(a.shape[1:], a)
    spikes, us, vs = [], [], []
    for a_t in a.unbind(0):  # unbind, not a[t]: its backward is one stack, not a zero-filled [T, ...] per step
        s, state = lif_step(a_t, state, p, counts)
        spikes.append(s)
        if trace:
            us.append(state.u)
            vs.append(state.v)
    if not spikes:
        return (a.clone(), a.clone(), a.clone()) if trace else a.clone()
    return (torch.stack(spikes), torch.stack(us), torch.stack(vs)) if trace else torch.stack(spikes)


def _decay_(x: torch.Tensor, keep: int, tmp: torch.Tensor) -> None:
    """``x = rtz(x * keep / 4096)`` in place (``rtz_decay``'s arithmetic) with the scratch tensor ``tmp``
    (x's shape). float32 x (int32 tmp): the product by the dyadic keep/4096 is exact where
    |x| * odd(keep) < 2^24, and the copy to int32 and back truncates toward zero. Integer x (tmp of x's
    dtype): p = x * keep (|p| < 2^31 for int32), then p / 4096 toward zero as the arithmetic shift of
    p + (4095 where p < 0). Only multiplies, adds, shifts and copies: torch's trunc and integer division are
    an order of magnitude slower on CPU (docs/benchmarks.md)."""
    if keep == DECAY_UNITY:
        return
    if keep == 0:
        x.zero_()
    elif x.is_floating_point():
        x.mul_(keep / DECAY_UNITY)
        tmp.copy_(x)
        x.copy_(tmp)
    else:
        x.mul_(keep)
        torch.bitwise_right_shift(x, x.element_size() * 8 - 1, out=tmp)  # -1 where p < 0, else 0
        x.add_(tmp.bitwise_and_(DECAY_UNITY - 1)).bitwise_right_shift_(DECAY_SHIFT)


def _lif_run_fused(a: torch.Tensor, p: LIFParams, dtype: torch.dtype, trace: bool, has_bias: bool = True,
                   inplace: bool = False):
    """``lif_step``'s arithmetic over all steps, in place in ``dtype``, without wrap and saturation (the caller
    has proven them idle, ``exact_dtype``) and without a stored membrane. ``has_bias`` False: the bias is
    known to be zero. Per step: decay u, add a << 6; decay v, add u and the bias; spike where v > vth << 6,
    which for integers is ``clamp(v - thr, 0, 1)``; reset v to ``v - v * s``. No comparison, no masked fill,
    no allocation per step (those are the slow torch ops on CPU). Step t's spikes overwrite step t's input
    once it is consumed, so the input buffer becomes the output (``a`` itself with ``inplace``)."""
    x = a.to(dtype)
    x = x.mul_(1 << ACT_SHIFT) if (inplace or x is not a) else x.mul(1 << ACT_SHIFT)  # a << 6, all steps
    bias = torch.as_tensor(p.bias).to(dtype) if has_bias else None
    keep_u, keep_v = DECAY_UNITY - (p.du + 1), DECAY_UNITY - p.dv
    fold_bias = keep_u == 0 and not trace  # u_t = a_t << 6 exactly: add the bias to it for all steps at once
    if fold_bias and has_bias:
        x.add_(bias)
    shape = a.shape[1:]
    u = torch.zeros(shape, dtype=dtype, device=a.device)
    v = torch.zeros_like(u)
    tmp = torch.empty(shape, dtype=torch.int32 if dtype.is_floating_point else dtype, device=a.device)
    us, vs = (torch.empty_like(x), torch.empty_like(x)) if trace else (None, None)
    # v never exceeds V_LIMIT here, so a larger threshold (a readout's NO_FIRE_VTH) is the same as V_LIMIT, which
    # every dtype of this loop holds (vth << 6 itself would not fit int32)
    thr = min(p.vth << VTH_SHIFT, V_LIMIT)
    add_bias = has_bias and not fold_bias
    for t in range(a.shape[0]):
        s = x[t]
        if keep_u == 0:
            u = s  # rtz(u * 0) = 0: the current is this step's input alone
        else:
            _decay_(u, keep_u, tmp)
            u.add_(s)
        _decay_(v, keep_v, tmp)
        v.add_(u)
        if add_bias:
            v.add_(bias)
        if trace:
            us[t] = u
        torch.sub(v, thr, out=s).clamp_(0, 1)  # the spikes, v > thr for integers, where the input was
        v.addcmul_(v, s, value=-1)  # v = 0 where s
        if trace:
            vs[t] = v
    out = x.to(a.dtype)
    return (out, us.to(a.dtype), vs.to(a.dtype)) if trace else out


def max_abs(a: torch.Tensor):
    """max |a| over all elements of ``a`` (0 for an empty tensor), as a Python int (a float for non-integer
    float values)."""
    if a.numel() == 0:
        return 0
    lo, hi = torch.aminmax(a)
    m = max(-lo.item(), hi.item())
    return int(m) if float(m).is_integer() else m


def _odd_part(k: int) -> int:
    while k and k % 2 == 0:
        k //= 2
    return k


@functools.lru_cache(maxsize=256)
def lif_bound(a_max: int, b_max: int, du: int, dv: int, steps: int) -> tuple[int, int]:
    """(u_max, v_max): the largest |u| and |v| a LIF can reach in ``steps`` steps from the zero state when
    every |a| <= ``a_max`` and |bias| <= ``b_max`` (internal units), from |rtz(x)| <= |x|:
    |u_t| <= r_u |u_{t-1}| + 64 a_max, |v_t| <= r_v |v_{t-1}| + |u_t| + b_max, so u_max = 64 a_max S_u,
    v_max = S_v (u_max + b_max) with S = sum_{k<steps} r^k, r_u = (4095 - du) / 4096, r_v = (4096 - dv) / 4096.
    Resets only lower |v|. Computed in exact rationals and rounded up (``bounds.static_bounds`` uses it)."""
    from fractions import Fraction

    def geometric(keep: int) -> Fraction:
        r = Fraction(keep, DECAY_UNITY)
        return Fraction(steps) if r == 1 else (1 - r ** steps) / (1 - r)

    u_max = (1 << ACT_SHIFT) * a_max * geometric(DECAY_UNITY - du - 1)
    v_max = geometric(DECAY_UNITY - dv) * (u_max + b_max)
    return math.ceil(u_max), math.ceil(v_max)


def _bias_max(p: LIFParams) -> int:
    b = max_abs(p.bias.detach()) if isinstance(p.bias, torch.Tensor) else abs(p.bias)
    return math.ceil(b)


def _proven_dtypes(p: LIFParams, a_max: int, steps: int, b_max: int | None = None) -> list:
    """The dtypes in which the fused loop is exact for input |a| <= ``a_max`` over ``steps`` steps, narrowest
    first (docs/integer-semantics.md, "Narrow types"):
      float32: no wrap or saturation can happen, and each decay product is exact: |x| * odd(keep) < 2^24
               (keep/4096 is dyadic, so x * keep/4096 needs only the odd part's bits), all values < 2^24;
      int32:   no wrap or saturation, |x| * keep < 2^31 for both decays;
      int64:   always; alone in the list where a stored membrane, wrap or saturation need the lif_step loop.
    ``b_max``: the largest |bias| (None: read from ``p``)."""
    u_max, v_max = lif_bound(a_max, _bias_max(p) if b_max is None else b_max, p.du, p.dv, steps)
    if p.mem_bits or not (u_max < V_LIMIT and v_max < V_LIMIT):  # a stored membrane, a wrap or a saturation
        return [torch.int64]
    keeps = ((u_max, DECAY_UNITY - p.du - 1), (v_max, DECAY_UNITY - p.dv))
    out = []
    if all(b * _odd_part(k) < _F32_EXACT for b, k in keeps):
        out.append(torch.float32)
    if all(b * k < (1 << 31) for b, k in keeps):
        out.append(torch.int32)
    return out + [torch.int64]


def exact_dtype(p: LIFParams, a_max: int, steps: int) -> torch.dtype:
    """The narrowest dtype in which ``lif_run`` computes ``p``'s dynamics exactly for |a| <= ``a_max`` over
    ``steps`` steps: float32, int32 or int64 (``_proven_dtypes``)."""
    return _proven_dtypes(p, a_max, steps)[0]


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
_TF32_EXACT = 1 << 11  # TF32 keeps 11 significant bits of each float32 input


def input_max(spikes: torch.Tensor) -> int:
    """The largest |value| of an integer input tensor: 1 for 0/1 spikes, up to 2^b - 1 for b-bit graded input
    (direct input), 0 when empty. It scales the accumulate bound below."""
    return int(spikes.abs().max()) if spikes.numel() else 0


def exact_float(bound: int, weight: torch.Tensor, max_in: int = 1) -> torch.dtype | None:
    """The float type in which integer ``weight`` times integer inputs of magnitude at most ``max_in`` sums
    exactly when every partial sum is at most ``bound`` in magnitude: float32 below 2^24, float64 below 2^53,
    None beyond (the caller computes in int64 or refuses).

    On a GPU float32 matmuls may run in TF32, which keeps 11 significant bits of each input (accumulating in
    float32): integer weights and inputs are exact there only below 2^11 in magnitude, so larger ones take
    float64, and so does everything when torch is told to allow reduced-precision float32 matmuls beyond TF32."""
    if bound >= _F64_EXACT:
        return None
    if bound >= _F32_EXACT:
        return torch.float64
    if weight.device.type == "cpu":
        return torch.float32
    tf32_exact = max_in < _TF32_EXACT and (weight.numel() == 0 or int(weight.abs().max()) < _TF32_EXACT)
    return torch.float32 if tf32_exact and torch.get_float32_matmul_precision() in ("highest", "high") \
        else torch.float64


def _exact_out(out_dtype: torch.dtype, ftype: torch.dtype) -> torch.dtype:
    """float32 where asked for and the sums were exact in float32, else int64."""
    return torch.float32 if out_dtype == torch.float32 and ftype == torch.float32 else torch.int64


def dense_accumulate(spikes: torch.Tensor, weight: torch.Tensor, weight_exp: int = 0,
                     out_dtype: torch.dtype = torch.int64, max_in: int | None = None) -> torch.Tensor:
    """Synaptic input ``(spikes @ weight.T)`` shifted by ``weight_exp``; spikes [..., n_in], weight [n_out, n_in].

    ``spikes`` are 0/1 spikes or graded integer payloads (direct input). Integer weights are summed with a
    BLAS matmul, which is exact because every partial sum is bounded by ``max_i sum_j |w_ij| * max_in``
    (``max_in``: the largest |input|, measured by ``input_max`` when None): float32 when that bound is below
    2^24 (``exact_float``), float64 below 2^53, else int64. The result is int64, or float32 holding the same
    integers when ``out_dtype`` is float32 and the sums were float32 (no conversion pass: the reference's fast
    path).
    """
    if weight.is_floating_point():
        return shift_exp(spikes.to(weight.dtype) @ weight.t(), weight_exp)
    m = input_max(spikes) if max_in is None else int(max_in)
    row = int(weight.abs().sum(dim=1).max()) if weight.numel() else 0
    ftype = exact_float(row * m, weight, m)
    if ftype is None:  # pragma: no cover - needs absurd weights; stay exact anyway (CPU int64 matmul)
        return shift_exp((spikes.to(torch.int64).cpu() @ weight.t().cpu()).to(spikes.device), weight_exp)
    acc = (spikes.to(ftype) @ weight.t().to(ftype)).to(_exact_out(out_dtype, ftype))
    return shift_exp(acc, weight_exp)


def conv_accumulate(spikes: torch.Tensor, weight: torch.Tensor, stride=(1, 1), padding=(0, 0), groups: int = 1,
                    weight_exp: int = 0, out_dtype: torch.dtype = torch.int64,
                    max_in: int | None = None) -> torch.Tensor:
    """Synaptic input of a Conv synapse: ``conv2d(spikes, weight)`` (cross-correlation, zero padding),
    shifted by ``weight_exp``; spikes [..., C, H, W] -> [..., C_out, H_out, W_out].

    Exact for integer weights by the same argument as ``dense_accumulate``: every partial sum is bounded
    by the largest per-channel sum of |w| times ``max_in`` (the largest |input|, measured when None), so
    float32 convolution is exact below 2^24, float64 below 2^53. ``out_dtype`` as for ``dense_accumulate``.
    """
    import torch.nn.functional as F

    lead = spikes.shape[:-3]
    x = spikes.reshape(-1, *spikes.shape[-3:])
    if weight.is_floating_point():
        acc = F.conv2d(x.to(weight.dtype), weight, stride=tuple(stride), padding=tuple(padding), groups=groups)
    else:
        m = input_max(x) if max_in is None else int(max_in)
        row = int(weight.abs().flatten(1).sum(1).max()) if weight.numel() else 0
        ftype = exact_float(row * m, weight, m)
        if ftype is None:  # pragma: no cover - absurd weights
            raise ValueError("conv weights times inputs too large for an exact float convolution")
        out = _exact_out(out_dtype, ftype)
        if x.device.type == "cpu":
            acc = F.conv2d(x.to(ftype), weight.to(ftype), stride=tuple(stride), padding=tuple(padding),
                           groups=groups).to(out)
        else:
            acc = _conv_as_matmul(x.to(ftype), weight.to(ftype), stride, padding, groups).to(out)
    return shift_exp(acc.reshape(*lead, *acc.shape[1:]), weight_exp)


def _conv_as_matmul(x: torch.Tensor, weight: torch.Tensor, stride, padding, groups: int) -> torch.Tensor:
    """``conv2d(x, weight)`` as unfold (a copy: exact) and one batched matmul per group: the integer path's
    convolution on GPUs, where cuDNN may pick FFT or Winograd algorithms, which are not sums of the integer
    products and so not exact. A matmul sums the same products as the dense synapse, in any order, exactly
    below the bound that chose the float type. x [B, C, H, W], weight [C_out, C / groups, kh, kw]."""
    import torch.nn.functional as F

    b, (c_out, c_g, kh, kw) = x.shape[0], weight.shape
    h_out = (x.shape[2] + 2 * padding[0] - kh) // stride[0] + 1
    w_out = (x.shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), padding=tuple(padding), stride=tuple(stride))  # [B, C * kh * kw, L]
    cols = cols.reshape(b, groups, c_g * kh * kw, -1)
    w = weight.reshape(groups, c_out // groups, c_g * kh * kw)
    return (w @ cols).reshape(b, c_out, h_out, w_out)  # [B, groups, C_out / groups, L]
