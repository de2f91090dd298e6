"""The golden model: a batched integer simulator of an IR network, built on qsnn_lava.dynamics.

Zero-delay time: layer l at step t integrates the spikes layer l-1 emitted at step t. Each layer's
synaptic input for all T steps and N samples is one BLAS matmul (exact, see dense_accumulate); the
neuron update then loops over T on int64 tensors.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import dynamics as dyn
from .bounds import static_bounds
from .ir import Network
from .record import Record


def layer_params(layer, bound: dict | None = None) -> tuple[torch.Tensor, int, dyn.LIFParams]:
    """Weights, exponent and LIF parameters of an IR layer; with a static ``bound`` (qsnn_lava.bounds)
    the wrap and saturation are skipped where the bound proves they cannot happen (exact, faster)."""
    n = layer.neuron
    bias = dyn.effective_bias(torch.from_numpy(n.bias_mant), n.bias_exp)
    wrap, sat = (True, True) if bound is None else (bound["u_can_wrap"], bound["v_can_saturate"])
    return (torch.from_numpy(layer.synapse.weight), layer.synapse.weight_exp,
            dyn.LIFParams(vth=n.vth, du=n.du, dv=n.dv, bias=bias, can_wrap=wrap, can_saturate=sat))


def simulate(net: Network, spikes: np.ndarray, batch_size: int = 256, progress: bool = False) -> Record:
    """Run input spikes [T, N, n_in] through ``net``; returns every layer's spikes [T, N, n] as uint8.

    ``info["overflow"]`` counts, per layer, the u wraps and v saturations that happened.
    """
    spikes = np.asarray(spikes)
    t0 = time.perf_counter()
    bounds = static_bounds(net)
    params = [layer_params(layer, bounds[layer.name]) for layer in net.layers]
    n_samples = spikes.shape[1]
    outs = [np.zeros((spikes.shape[0], n_samples, layer.neuron.n), np.uint8) for layer in net.layers]
    counts = [{"u_wraps": 0, "v_saturations": 0} for _ in net.layers]
    starts = range(0, n_samples, batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="reference", unit="batch", leave=False)
    with torch.no_grad():
        for lo in starts:
            s = torch.from_numpy(spikes[:, lo:lo + batch_size].astype(np.int64))
            for i, (w, e, p) in enumerate(params):
                s = dyn.lif_run(dyn.dense_accumulate(s, w, e), p, counts=counts[i])
                outs[i][:, lo:lo + batch_size] = s.numpy()
    return Record("reference", [layer.name for layer in net.layers], outs,
                  info={"seconds": time.perf_counter() - t0,
                        "overflow": {layer.name: c for layer, c in zip(net.layers, counts)}})


def trace(net: Network, spikes: np.ndarray, layer_index: int):
    """u and v [T, n] of one layer for one sample (spikes [T, 1, n_in] or [T, n_in]), zero-delay time."""
    s = torch.from_numpy(np.asarray(spikes).reshape(net.timesteps, 1, -1).astype(np.int64))
    with torch.no_grad():
        for i, (w, e, p) in enumerate(layer_params(layer) for layer in net.layers[: layer_index + 1]):
            a = dyn.dense_accumulate(s, w, e)
            if i == layer_index:
                _, u, v = dyn.lif_run(a, p, trace=True)
                return u[:, 0].numpy(), v[:, 0].numpy()
            s = dyn.lif_run(a, p)
