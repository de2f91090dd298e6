"""Thin nn.Module wrappers around the pure dynamics in qsnn_lava.dynamics (Norse style)."""
from __future__ import annotations

import torch
from torch import nn

from . import dynamics as dyn


class LIF(nn.Module):
    """CUBA LIF population with Lava's integer parameters.

    The QP-SNN hard-reset LIF ``U[t] = tau U[t-1] + X[t]`` is ``du = 4095`` (the current keeps no
    memory, u = X << 6) and ``dv = 4096 * (1 - tau)`` (tau = 0.5 -> dv = 2048), compared as
    ``v > vth << 6`` (Loihi's strict comparison; the paper writes >=).
    """

    def __init__(self, n: int, vth: int, du: int = 4095, dv: int = 2048):
        super().__init__()
        self.n, self.vth, self.du, self.dv = n, int(vth), int(du), int(dv)

    def params(self) -> dyn.LIFParams:
        return dyn.LIFParams(vth=self.vth, du=self.du, dv=self.dv, bias=0)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """a: synaptic input [T, N, n] (int64 exact, or float64 for training) -> spikes [T, N, n]."""
        return dyn.lif_run(a, self.params())

    def extra_repr(self) -> str:
        return f"n={self.n}, vth={self.vth}, du={self.du}, dv={self.dv}"
