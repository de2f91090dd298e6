"""Run a lava-dl netx HDF5 file in Lava (fixed_pt): the last layer's spikes, in zero-delay time.

Used to prove an exported netx file equals our IR and by deployment bundles. Samples run back to back
with netx's own ``reset_interval = T, reset_offset = 1`` (the same windows as our graph builder).
"""
from __future__ import annotations

import numpy as np

from qsnn_lava.converters import lava_graph

from .lava import import_lava


def run_netx(path, spikes: np.ndarray, timesteps: int, n_layers: int, hw: bool = False,
             input_shape: tuple | None = None) -> np.ndarray:
    """Input spikes [T, N, n_in] -> output-layer spikes [T, N, n_out] of the netx network at ``path``.
    ``n_layers`` counts neuron layers (not flatten). With a (C, H, W) ``input_shape`` the flat input is
    reshaped and transposed to the (W, H, C) port netx gives a conv-first network."""
    import_lava()
    from lava.lib.dl.netx.hdf5 import Network as NetxNetwork
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    T, N, _ = spikes.shape
    steps = N * T + n_layers
    net = NetxNetwork(net_config=str(path), reset_interval=T, reset_offset=1)
    src, sink = Source(data=lava_graph.source_data(spikes, steps)), Sink(shape=net.out.shape, buffer=steps)
    port = src.s_out
    if input_shape is not None and len(input_shape) == 3:
        port = port.reshape(tuple(input_shape)).transpose([2, 1, 0])
    port.connect(net.inp)
    net.out.connect(sink.a_in)
    cfg = Loihi2HwCfg() if hw else Loihi2SimCfg(select_tag="fixed_pt")
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        raw = np.asarray(sink.data.get())
    finally:
        net.stop()
    return lava_graph.unpack(raw, T, n_layers, N)  # netx: a sequential chain, depth = number of layers
