"""Run a lava-dl netx HDF5 file in Lava (fixed_pt): the last layer's spikes, in zero-delay time.

Used to prove an exported netx file equals our IR and by deployment bundles. The Lava worker
(``qsnn_lava.deployment.lava_worker.run_netx_in_process``) loads a copy of the file with lava-dl's netx and
runs the samples back to back with netx's own ``reset_interval = T, reset_offset = 1`` (the same
windows as our graph builder).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError

from .lava import call_worker


def run_netx(path, spikes: np.ndarray, timesteps: int, n_layers: int, hw: bool = False,
             input_shape: tuple | None = None) -> np.ndarray:
    """Input spikes [T, N, n_in] -> output-layer spikes [T, N, n_out] of the netx network at ``path``.
    ``n_layers`` counts neuron layers (not flatten). With a (C, H, W) ``input_shape`` the flat input is
    reshaped and transposed to the (W, H, C) port netx gives a conv-first network. ``hw`` runs on Loihi 2
    (Loihi2HwCfg, needs lava-loihi) instead of Lava's CPU models."""
    path = Path(path)
    if not path.is_file():
        raise QsnnError(f"netx file '{path}' not found")
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.dtype.kind not in "biuf":
        raise QsnnError(f"input spikes have shape {spikes.shape} and dtype {spikes.dtype}; netx runs take "
                        f"numeric spikes [T={timesteps}, N, n_in]")
    request = {"netx": "model.net", "timesteps": int(timesteps), "n_layers": int(n_layers), "hw": bool(hw),
               "input_shape": None if input_shape is None else [int(s) for s in input_shape]}
    _, arrays = call_worker("run_netx", request, spikes=spikes, files={"model.net": path})
    return arrays["out"]
