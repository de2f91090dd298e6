"""The ``qmem`` neuron in Lava: a CUBA LIF whose stored membrane is a b-bit saturating integer. CPU only.

Semantics (ours, not Loihi's), per time step and neuron, with b = ``mem_bits`` (2..8) and
q = ``mem_shift`` (0..23):

    u = wrap24( rtz(u * (4096 - (du + 1)) / 4096) + (a << 6) )
    v = sat24(  rtz(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp) )
    s = v > (vth << 6)
    v = 0 where s
    v = clip(v >> q, -2^(b-1), 2^(b-1) - 1) << q        (>> is arithmetic: floor)

The first four lines are Loihi's CUBA LIF exactly as ``qsnn_lava.dynamics.lif_step`` computes it; the
last is the storing step (``dynamics.store_membrane``). ``dynamics.qmem_shift(vth, b)`` gives the
smallest q whose top stored level ``(2^(b-1) - 1) << q`` reaches ``vth << 6``. Like Lava's ``LIFReset``,
u and v are zeroed before the step at which ``time_step % reset_interval == reset_offset % reset_interval``.

Loihi 2 has no b-bit membrane storage: this process runs only on CPU in Lava's ``Loihi2SimCfg``
(``select_tag='fixed_pt'``), and a deploy to a Loihi target must refuse it. The process model calls
``dynamics.lif_step`` on numpy int64 arrays (no torch in the Lava process, no second copy of the
arithmetic); its state Vars are int32 as in Lava's bit-accurate LIF.

Lava looks for a process's models in the process's module and then imports every module of the
process's directory; pass ``exception_proc_model_map=QMEM_MODEL_MAP`` (merged with any other
exceptions) so the choice is explicit. This module imports Lava at import time: import it only when
Lava is used.
"""
from __future__ import annotations

import typing as ty

import numpy as np

from qsnn_lava import dynamics as dyn
from qsnn_lava.converters.lava_env import import_lava

import_lava()  # Lava's runtime sets the 'fork' start method on import; do that the tolerant way first

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402


class QMemLIF(LIFReset):
    """A ``LIFReset`` whose voltage is stored as a ``mem_bits``-bit saturating integer at bit ``mem_shift``.

    After Loihi's CUBA LIF step (decay, wrap, saturation, spike ``v > vth << 6``, hard reset of v), every
    step ends with ``v = clip(v >> mem_shift, -2^(mem_bits-1), 2^(mem_bits-1) - 1) << mem_shift``
    (arithmetic shift: floor). ``mem_bits`` is 2..8, ``mem_shift`` 0..23 (``dynamics.qmem_shift`` gives
    the finest shift whose top level reaches the threshold). All other parameters, including
    ``reset_interval`` and ``reset_offset``, are ``LIFReset``'s. CPU only: Loihi 2 cannot store a b-bit
    membrane, so a deploy to a Loihi target must refuse this process.
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], mem_bits: int, mem_shift: int,
                 u=0, v=0, du=0, dv=0, bias_mant=0, bias_exp=0, vth=10, reset_interval: int = 1,
                 reset_offset: int = 0, name: ty.Optional[str] = None, log_config=None) -> None:
        super().__init__(shape=shape, u=u, v=v, du=du, dv=dv, bias_mant=bias_mant, bias_exp=bias_exp,
                         vth=vth, reset_interval=reset_interval, reset_offset=reset_offset, name=name,
                         log_config=log_config)  # first: a Process that raises earlier fails in __del__
        mem_bits, mem_shift = int(mem_bits), int(mem_shift)
        if mem_bits == 0:
            raise ValueError("QMemLIF needs mem_bits in 2..8; use LIFReset for a full 24-bit membrane")
        dyn.store_membrane(np.zeros(1, np.int64), mem_bits, mem_shift)  # validates both (ValueError)
        self.mem_bits = Var(shape=(1,), init=mem_bits)
        self.mem_shift = Var(shape=(1,), init=mem_shift)


def _scalar(x) -> int:
    """A (1,)-shaped Var's value (an int, or an array of one element) as a Python int."""
    return int(np.asarray(x).reshape(-1)[0])


@implements(proc=QMemLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyQMemLIFModelFixed(PyLoihiProcessModel):
    """Fixed-point model of ``QMemLIF``: ``dynamics.lif_step`` on numpy int64 arrays, state kept int32.

    Ports, Vars and the reset schedule are those of Lava's ``PyLifResetModelBitAcc``; the arithmetic is
    ``qsnn_lava.dynamics``'s, which the tests check against Lava's own LIF models.
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int16, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    du: int = LavaPyType(int, np.uint16, precision=12)
    dv: int = LavaPyType(int, np.uint16, precision=12)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)
    vth: int = LavaPyType(int, np.int32, precision=17)
    mem_bits: int = LavaPyType(int, np.int32, precision=4)
    mem_shift: int = LavaPyType(int, np.int32, precision=5)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval

    def run_spk(self):
        """One Lava time step: receive the synaptic input, zero u and v on the sample's first step
        (``time_step % reset_interval == reset_offset``), run ``dynamics.lif_step`` and send the spikes."""
        a_in = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:  # as PyLifResetModelBitAcc
            self.u *= 0
            self.v *= 0
        p = dyn.LIFParams(vth=_scalar(self.vth), du=_scalar(self.du), dv=_scalar(self.dv),
                          bias=dyn.effective_bias(np.asarray(self.bias_mant), np.asarray(self.bias_exp)),
                          mem_bits=_scalar(self.mem_bits), mem_shift=_scalar(self.mem_shift))
        state = dyn.LIFState(self.u.astype(np.int64), self.v.astype(np.int64))
        s, state = dyn.lif_step(np.asarray(a_in).astype(np.int64), state, p)
        self.u[:] = state.u
        self.v[:] = state.v
        self.s_out.send(s != 0)


QMEM_MODEL_MAP = {QMemLIF: PyQMemLIFModelFixed}
