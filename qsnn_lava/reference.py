"""The golden model: a batched integer simulator of an IR network, built on qsnn_lava.dynamics.

Zero-delay time: a layer at step t integrates the spikes its sources emitted at step t. Each
synapse population's input for all T steps and N samples is one BLAS matmul or convolution (exact, see
dense_accumulate / conv_accumulate); the inputs of a layer's synapses (main and skips) add up, and the
neuron update then loops over T on int64 tensors.

A layer with a recurrent synapse (``ir.Layer.recurrent``) cannot take its whole input up front: its input at
step t includes ``W_rec @ s(t-1)``, its own spikes one step earlier. ``recurrent_run`` adds that term step by
step to the feed-forward input (still computed for all T at once) and updates the neuron with the same
``dynamics.lif_step``; feed-forward layers keep the whole-T path.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import dynamics as dyn
from .bounds import static_bounds
from .ir import INPUT, Network
from .record import Record


def lif_params(neuron, bound: dict | None = None, device=None) -> dyn.LIFParams:
    """LIF parameters (``dynamics.LIFParams``) of an IR neuron ``neuron`` (``ir.LIF``, ``ir.QMem`` or
    ``ir.Readout``, whose threshold is ``dynamics.NO_FIRE_VTH``): vth, du,
    dv, the effective bias (mantissa << exponent) and, for QMem, the stored-membrane width and shift. With a
    static ``bound`` (one layer's entry of ``bounds.static_bounds``) the u wrap and v saturation are skipped
    where the bound proves they cannot happen (exact, faster); None keeps both. The bias lives on ``device``
    (default the CPU)."""
    bias = dyn.effective_bias(torch.from_numpy(neuron.bias_mant), neuron.bias_exp).to(device)
    wrap, sat = (True, True) if bound is None else (bound["u_can_wrap"], bound["v_can_saturate"])
    vth = dyn.NO_FIRE_VTH if neuron.type == "readout" else neuron.vth  # a readout never fires or resets
    return dyn.LIFParams(vth=vth, du=neuron.du, dv=neuron.dv, bias=bias, can_wrap=wrap, can_saturate=sat,
                         mem_bits=getattr(neuron, "mem_bits", 0), mem_shift=getattr(neuron, "mem_shift", 0))


def accumulate(syn, s: torch.Tensor) -> torch.Tensor:
    """Synaptic input of one IR synapse population ``syn`` (``ir.Dense`` or ``ir.Conv``) for flat spikes ``s``
    [T, N, n_in] (int64 0/1) -> int64 [T, N, n_out], in weight-mantissa units shifted by ``weight_exp``
    (the neuron adds a << 6 to u)."""
    w = torch.from_numpy(syn.weight).to(s.device)
    if syn.type == "dense":
        return dyn.dense_accumulate(s, w, syn.weight_exp)
    if syn.type == "conv":
        a = dyn.conv_accumulate(s.reshape(*s.shape[:2], *syn.in_shape), w, syn.stride, syn.padding,
                                syn.groups, syn.weight_exp)
        return a.reshape(*s.shape[:2], -1)
    raise ValueError(f"no accumulate for synapse type '{syn.type}'")


def fanout(syn, mask: np.ndarray) -> np.ndarray:
    """int64 [n_in]: for each input j, the number of synapses of ``mask`` (weight-shaped 0/1) that reach it,
    i.e. the nonzeros of column j of the unrolled matrix (``converters.lava_graph.synapse_matrix``).

    Dense: the column sums. Conv: the transposed convolution of an all-ones output map with the mask (exact in
    float64), which is the same count without building the [n_out, n_in] matrix.
    """
    mask = np.asarray(mask, np.int64)
    if syn.type == "dense":
        return mask.sum(axis=0)
    import torch.nn.functional as F

    (c, h, w), (co, ho, wo), (kh, kw) = syn.in_shape, syn.out_shape, syn.kernel
    (sh, sw), (ph, pw) = syn.stride, syn.padding
    extra = (h + 2 * ph - kh - (ho - 1) * sh, w + 2 * pw - kw - (wo - 1) * sw)  # rows / cols the conv never reaches
    out = F.conv_transpose2d(torch.ones(1, co, ho, wo, dtype=torch.float64), torch.from_numpy(mask).double(),
                             stride=(sh, sw), padding=(ph, pw), output_padding=extra, groups=syn.groups)
    assert tuple(out.shape[1:]) == (c, h, w), (out.shape, syn.in_shape)
    return out.reshape(-1).round().long().numpy()


def layer_inputs(net: Network, index: int, outputs: dict) -> torch.Tensor:
    """Summed synaptic input of layer ``index`` of ``net`` (main synapse and skips), int64 [T, N, n] in
    weight-mantissa units; ``outputs``: source name -> spikes [T, N, n_source] (int64), the input under
    ``ir.INPUT``."""
    a = None
    for src, syn in net.sources(index):
        x = accumulate(syn, outputs[src])
        a = x if a is None else a + x
    return a


def recurrent_run(a_ff: torch.Tensor, rec, p: dyn.LIFParams, trace: bool = False, counts: dict | None = None):
    """Run a layer with a recurrent Dense ``rec`` (``ir.Dense`` [n, n]) over time-major feed-forward input ``a_ff``
    [T, N, n] (int64, all of the layer's other sources summed): at step t the neuron integrates
    ``a_ff[t] + rec(s(t-1))``, with ``s(-1) = 0``, through ``dynamics.lif_step``. Returns what
    ``dynamics.lif_run`` returns: spikes [T, N, n] (and the u, v traces with ``trace``)."""
    w = torch.from_numpy(rec.weight).to(a_ff.device)
    state = dyn.lif_init(a_ff.shape[1:], a_ff)
    spikes = torch.zeros_like(a_ff)
    us, vs = (torch.empty_like(a_ff), torch.empty_like(a_ff)) if trace else (None, None)
    for t in range(a_ff.shape[0]):
        a = a_ff[t] if t == 0 else a_ff[t] + dyn.dense_accumulate(spikes[t - 1], w, rec.weight_exp)
        spikes[t], state = dyn.lif_step(a, state, p, counts)
        if trace:
            us[t], vs[t] = state.u, state.v
    return (spikes, us, vs) if trace else spikes


def layer_run(layer, a: torch.Tensor, p: dyn.LIFParams, trace: bool = False, counts: dict | None = None):
    """One layer's neurons over the summed input ``a`` [T, N, n] of its sources: ``dynamics.lif_run`` (the whole-T
    path) for a feed-forward layer, ``recurrent_run`` for one with a recurrent synapse."""
    if layer.recurrent is None:
        return dyn.lif_run(a, p, trace=trace, counts=counts)
    return recurrent_run(a, layer.recurrent, p, trace=trace, counts=counts)


VOLTAGE = "voltage:"  # run_layers' key prefix of a readout layer's voltage


def run_layers(net: Network, s: torch.Tensor, params: list, counts: list | None = None, upto: int | None = None):
    """Run input spikes ``s`` [T, N, n_in] (int64 0/1) through the first ``upto`` layers of ``net`` (None: all).

    ``params``: one ``dynamics.LIFParams`` per layer (``lif_params``); ``counts``: None, or one dict per
    layer whose "u_wraps" and "v_saturations" are incremented. Returns {source name: spikes [T, N, n]},
    the input included under ``ir.INPUT``, and a readout layer's voltage v [T, N, n] (int64) under
    ``VOLTAGE + name`` (its spikes are all 0)."""
    outputs = {INPUT: s}
    for i, layer in enumerate(net.layers[:upto]):
        a = layer_inputs(net, i, outputs)
        c = None if counts is None else counts[i]
        if layer.neuron.type == "readout":  # no spikes: its voltage, under VOLTAGE + name
            outputs[layer.name], _, outputs[VOLTAGE + layer.name] = layer_run(layer, a, params[i], True, c)
        else:
            outputs[layer.name] = layer_run(layer, a, params[i], counts=c)
    return outputs


def simulate(net: Network, spikes: np.ndarray, batch_size: int = 256, progress: bool = False,
             device=None) -> Record:
    """Run input spikes ``spikes`` [T, N, n_in] (0/1) through ``net`` in zero-delay time (recurrent synapses one
    step late), bit-exactly.

    ``batch_size``: samples per batch (memory, not results); ``progress``: a progress bar per batch; ``device``:
    the torch device to compute on (default the CPU; the integer arithmetic is exact on any). Returns a
    ``Record`` ("reference") with every layer's spikes [T, N, n] as uint8 (and a readout layer's voltage, int32,
    in ``voltages``); ``info["seconds"]`` is the wall
    time and ``info["overflow"]`` counts, per layer, the u wraps and v saturations that happened."""
    spikes = np.asarray(spikes)
    t0 = time.perf_counter()
    bounds = static_bounds(net)
    device = torch.device("cpu") if device is None else torch.device(device)
    params = [lif_params(layer.neuron, bounds[layer.name], device) for layer in net.layers]
    n_samples = spikes.shape[1]
    outs = [np.zeros((spikes.shape[0], n_samples, layer.neuron.n), np.uint8) for layer in net.layers]
    volts = {layer.name: np.zeros((spikes.shape[0], n_samples, layer.neuron.n), np.int32)
             for layer in net.layers if layer.neuron.type == "readout"}
    counts = [{"u_wraps": 0, "v_saturations": 0} for _ in net.layers]
    starts = range(0, n_samples, batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="reference", unit="batch", leave=False)
    with torch.no_grad():
        for lo in starts:
            s = torch.from_numpy(spikes[:, lo:lo + batch_size].astype(np.int64)).to(device)
            outputs = run_layers(net, s, params, counts)
            for i, layer in enumerate(net.layers):
                outs[i][:, lo:lo + batch_size] = outputs[layer.name].cpu().numpy()
            for name, v in volts.items():
                v[:, lo:lo + batch_size] = outputs[VOLTAGE + name].cpu().numpy()
    return Record("reference", [layer.name for layer in net.layers], outs,
                  info={"seconds": time.perf_counter() - t0,
                        "overflow": {layer.name: c for layer, c in zip(net.layers, counts)}}, voltages=volts)


def trace(net: Network, spikes: np.ndarray, layer_index: int):
    """Membranes of layer ``layer_index`` of ``net`` for one sample: ``spikes`` [T, 1, n_in] or [T, n_in] (0/1)
    -> (u, v), each int64 [T, n] in the neuron's internal units (64 x weight-mantissa units), zero-delay time."""
    s = torch.from_numpy(np.asarray(spikes).reshape(net.timesteps, 1, -1).astype(np.int64))
    params = [lif_params(layer.neuron) for layer in net.layers]
    with torch.no_grad():
        outputs = run_layers(net, s, params, upto=layer_index)
        a = layer_inputs(net, layer_index, outputs)
        _, u, v = layer_run(net.layers[layer_index], a, params[layer_index], trace=True)
    return u[:, 0].numpy(), v[:, 0].numpy()
