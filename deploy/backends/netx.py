"""Run a lava-dl netx HDF5 file in Lava (fixed_pt): the last layer's spikes, in zero-delay time.

Used to prove an exported netx file equals our IR and by deployment bundles. Samples run back to back
with netx's own ``reset_interval = T, reset_offset = 1`` (the same windows as our graph builder).
"""
from __future__ import annotations

import numpy as np

from .lava import import_lava


def run_netx(path, spikes: np.ndarray, timesteps: int, n_layers: int, hw: bool = False) -> np.ndarray:
    """Input spikes [T, N, n_in] -> output-layer spikes [T, N, n_out] of the netx network at ``path``."""
    import_lava()
    from lava.lib.dl.netx.hdf5 import Network as NetxNetwork
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    T, N, n_in = spikes.shape
    steps = N * T + n_layers
    data = np.zeros((n_in, steps), np.int32)
    data[:, : N * T] = np.transpose(spikes, (2, 1, 0)).reshape(n_in, N * T)
    net = NetxNetwork(net_config=str(path), reset_interval=T, reset_offset=1)
    src, sink = Source(data=data), Sink(shape=net.out.shape, buffer=steps)
    src.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    cfg = Loihi2HwCfg() if hw else Loihi2SimCfg(select_tag="fixed_pt")
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        raw = np.asarray(sink.data.get())
    finally:
        net.stop()
    lo = n_layers  # netx layer i (0-based) output for local step tau is at Lava step k*T + tau + i + 2
    block = raw[:, lo: lo + N * T].reshape(raw.shape[0], N, T)
    return np.ascontiguousarray(np.transpose(block, (2, 1, 0))).astype(np.uint8)
