"""Thin nn.Module wrappers around the pure dynamics in qsnn_lava.dynamics (Norse style)."""
from __future__ import annotations

import torch
from torch import nn

from . import dynamics as dyn
from .ir import VTH_MAX
from .quantizers import ste_round


class LIF(nn.Module):
    """CUBA LIF population with Lava's integer parameters.

    The QP-SNN hard-reset LIF ``U[t] = tau U[t-1] + X[t]`` is ``du = 4095`` (the current keeps no
    memory, u = X << 6) and ``dv = 4096 * (1 - tau)`` (tau = 0.5 -> dv = 2048), compared as
    ``v > vth << 6`` (Loihi's strict comparison; the paper writes >=).

    Learned threshold (``learn_vth``): the threshold is ``vth = round(vth0 * vth_scale)`` weight-mantissa
    units, clipped to [1, 2^17 - 1], with ``vth_scale`` a learned per-layer parameter (initially 1) and
    ``vth0`` the configured threshold. Training uses the same integer (straight-through rounding: the
    forward value is the deployed integer, the gradient reaches ``vth_scale`` through the surrogate spike),
    so trained = deployed stays exact; ``vth`` is always the deployed integer.
    """

    def __init__(self, n: int, vth: int, du: int = 4095, dv: int = 2048, learn_vth: bool = False):
        super().__init__()
        self.n, self.vth0, self.du, self.dv = n, int(vth), int(du), int(dv)
        self.vth_scale = nn.Parameter(torch.tensor(1.0)) if learn_vth else None

    def threshold(self):
        """The threshold mantissa this step uses: a float tensor holding the rounded integer (straight
        through) while a learned threshold trains, else the int ``vth``."""
        if self.vth_scale is None or not self.training:
            return self.vth
        return ste_round(self.vth0 * self.vth_scale).clamp(1, VTH_MAX)

    @property
    def vth(self) -> int:
        """The deployed threshold mantissa (an int): ``vth0``, or ``round(vth0 * vth_scale)`` in [1, 2^17 - 1]
        when learned."""
        if self.vth_scale is None:
            return self.vth0
        return int(min(max(round(self.vth0 * float(self.vth_scale.detach())), 1), VTH_MAX))

    def params(self, bias=None) -> dyn.LIFParams:
        """The ``dynamics.LIFParams`` of this population; ``bias`` in internal units (``bias_mant << bias_exp``,
        broadcastable to one step's [N, ...]; None means 0). ``dynamics.lif_run`` leaves out the u wrap and v
        saturation where the window's own input proves them impossible (``dynamics.lif_bound``)."""
        return dyn.LIFParams(vth=self.threshold(), du=self.du, dv=self.dv, bias=0 if bias is None else bias)

    def forward(self, a: torch.Tensor, bias=None) -> torch.Tensor:
        """a: synaptic input [T, N, ...] (int64 exact, or float for training), ``bias`` broadcastable to
        one step's [N, ...] in internal units (bias_mant << bias_exp) -> spikes [T, N, ...]."""
        return dyn.lif_run(a, self.params(bias))


class Readout(LIF):
    """A non-spiking readout population (``ir.Readout``): the CUBA LIF's u and v, never fired or reset, whose
    output is its voltage v [T, N, ...] (internal units; float holding integers while training, int64 in
    eval), through ``dynamics.lif_run`` at ``dynamics.NO_FIRE_VTH`` like the reference's readouts. ``vth``
    (the spiking threshold it replaces) only scales the training logits (``QSNN.logits``)."""

    def forward(self, a: torch.Tensor, bias=None) -> torch.Tensor:
        """Synaptic input ``a`` [T, N, ...] -> the voltage after each step [T, N, ...]."""
        p = dyn.LIFParams(vth=dyn.NO_FIRE_VTH, du=self.du, dv=self.dv, bias=0 if bias is None else bias)
        return dyn.lif_run(a, p, trace=True)[2]


class QMem(LIF):
    """The qmem neuron (the baseline MFP-QSNN criticises): a LIF whose voltage is stored in ``mem_bits``
    bits after every step, at the finest bit position whose top level reaches the threshold
    (``dynamics.store_membrane``, ``dynamics.qmem_shift``). Trains through the same arithmetic with a
    straight-through floor; CPU-only on Lava (converters.qmem_lava)."""

    def __init__(self, n: int, vth: int, du: int = 4095, dv: int = 2048, mem_bits: int = 4):
        super().__init__(n, vth=vth, du=du, dv=dv)
        self.mem_bits = int(mem_bits)
        self.mem_shift = dyn.qmem_shift(self.vth, self.mem_bits)

    def params(self, bias=None) -> dyn.LIFParams:
        """The LIF's ``dynamics.LIFParams`` with ``mem_bits`` and ``mem_shift`` set (the stored membrane)."""
        return super().params(bias)._replace(mem_bits=self.mem_bits, mem_shift=self.mem_shift)

    def extra_repr(self) -> str:
        """The module's fields for its repr: n, vth, du, dv, mem_bits."""
        return f"n={self.n}, vth={self.vth}, du={self.du}, dv={self.dv}, mem_bits={self.mem_bits}"


def decay_kernel(timesteps: int, keep: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """Lower-triangular [T, T] matrix K[t, i] = keep^(t - i) for i <= t: the leaky sum as one matmul
    (on ``device``, default the CPU)."""
    t = torch.arange(timesteps, dtype=dtype, device=device)
    k = keep ** (t[:, None] - t[None, :]).clamp(min=0)
    return torch.tril(k)


class MFP(LIF):
    """The memory-free neuron of MFP-QSNN as this project interprets it (docs/methods.md, ours).

    Deployed (eval mode, and on Loihi): a CUBA LIF with du = 2047 (the current is a leaky sum of all past
    input, decay 1/2) and dv = 4095 (the voltage keeps only rtz(v / 4096) of its past, so v is the
    current up to that carry; dv = 4096, full decay, does not fit Loihi's 12-bit register). Integer and
    exact, through qsnn_lava.dynamics like every other neuron.

    Training: the reset-free leaky sum H[t] = sum_{i<=t} r^(t-i) a[i] << 6 (r = (4096 - du - 1) / 4096)
    for all T steps at once (one matmul with ``decay_kernel``), spikes where H > vth << 6 with the
    surrogate gradient. This is a relaxation: it drops the round-toward-zero of each decay and the voltage
    carry, so training can differ slightly from the deployed network, while the eval model, which is what
    accuracy is reported for, is the deployed network exactly.
    """

    def __init__(self, n: int, vth: int, du: int = 2047, dv: int = 4095, parallel: bool = True,
                 learn_vth: bool = False):
        super().__init__(n, vth=vth, du=du, dv=dv, learn_vth=learn_vth)
        self.parallel = parallel  # False: train step by step on the exact dynamics (BPTT), for comparison

    def forward(self, a: torch.Tensor, bias=None) -> torch.Tensor:
        """Synaptic input ``a`` [T, N, ...] -> spikes [T, N, ...]. A float ``a`` with ``parallel`` (training)
        runs the reset-free leaky sum of all T steps at once; otherwise the exact integer LIF (``LIF.forward``).
        ``bias``: internal units, broadcastable to one step's [N, ...], or None."""
        if not (a.is_floating_point() and self.parallel):
            return super().forward(a, bias)
        keep = (dyn.DECAY_UNITY - self.du - 1) / dyn.DECAY_UNITY
        k = decay_kernel(a.shape[0], keep, a.dtype, a.device)
        h = torch.einsum("ti,i...->t...", k, a) * (1 << dyn.ACT_SHIFT)
        return dyn.fire(h if bias is None else h + bias, self.threshold())

    def extra_repr(self) -> str:
        """The module's fields for its repr: n, vth, du, dv."""
        return f"n={self.n}, vth={self.vth}, du={self.du}, dv={self.dv}"
