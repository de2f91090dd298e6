"""The golden model: a batched integer simulator of an IR network, built on qsnn_lava.dynamics.

Zero-delay time: a layer at step t integrates the spikes its sources emitted at step t. Each
synapse population's input for all T steps and N samples is one BLAS matmul or convolution (exact, see
dense_accumulate / conv_accumulate); the inputs of a layer's synapses (main and skips) add up, and the
neuron update then loops over T (``dynamics.lif_run``) in the narrowest type its bound proves exact
(float32, int32 or int64; docs/integer-semantics.md, "Narrow types"). ``simulate`` runs sample shards on
all torch threads at once, each shard single-threaded (docs/benchmarks.md: per-op threading loses on the
small per-step tensors).

A layer with a recurrent synapse (``ir.Layer.recurrent``) cannot take its whole input up front: its input at
step t includes ``W_rec @ s(t-1)``, its own spikes one step earlier. ``recurrent_run`` adds that term step by
step to the feed-forward input (still computed for all T at once) and updates the neuron with the same
``dynamics.lif_step``; feed-forward layers keep the whole-T path.
"""
from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

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


def accumulate(syn, s: torch.Tensor, out_dtype: torch.dtype = torch.int64, max_in: int | None = None) -> torch.Tensor:
    """Synaptic input of one IR synapse population ``syn`` (``ir.Dense`` or ``ir.Conv``) for flat spikes ``s``
    [T, N, n_in] (0/1 or graded direct input, any dtype; ``max_in`` its largest value, measured when None) ->
    int64 [T, N, n_out], in weight-mantissa units shifted by ``weight_exp`` (the neuron adds a << 6 to u);
    float32 holding the same integers with ``out_dtype`` float32 where that is exact
    (``dynamics.dense_accumulate``)."""
    w = torch.from_numpy(syn.weight).to(s.device)
    if syn.type == "dense":
        return dyn.dense_accumulate(s, w, syn.weight_exp, out_dtype, max_in)
    if syn.type == "conv":
        a = dyn.conv_accumulate(s.reshape(*s.shape[:2], *syn.in_shape), w, syn.stride, syn.padding,
                                syn.groups, syn.weight_exp, out_dtype, max_in)
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


def layer_inputs(net: Network, index: int, outputs: dict, out_dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Summed synaptic input of layer ``index`` of ``net`` (main synapse and skips), int64 [T, N, n] in
    weight-mantissa units; ``outputs``: source name -> spikes [T, N, n_source] (0/1), the input under
    ``ir.INPUT``. ``out_dtype`` float32: a layer with one source may come back as float32 holding the same
    integers (``accumulate``); sums of several sources are always int64 (a float32 sum could pass 2^24)."""
    sources = net.sources(index)
    if len(sources) > 1:
        out_dtype = torch.int64
    a = None
    for src, syn in sources:
        x = accumulate(syn, outputs[src], out_dtype, net.source_max(src))
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
        a = a_ff[t] if t == 0 else a_ff[t] + dyn.dense_accumulate(spikes[t - 1], w, rec.weight_exp, max_in=1)
        spikes[t], state = dyn.lif_step(a, state, p, counts)
        if trace:
            us[t], vs[t] = state.u, state.v
    return (spikes, us, vs) if trace else spikes


def layer_run(layer, a: torch.Tensor, p: dyn.LIFParams, trace: bool = False, counts: dict | None = None,
              fast: bool = False):
    """One layer's neurons over the summed input ``a`` [T, N, n] of its sources: ``dynamics.lif_run`` (the whole-T
    path) for a feed-forward layer, ``recurrent_run`` for one with a recurrent synapse (int64 ``a``). ``fast``:
    ``a`` is the caller's scratch, holding integers in any dtype (``run_layers``)."""
    if layer.recurrent is None:
        return dyn.lif_run(a, p, trace=trace, counts=counts, dtype="exact" if fast else None, inplace=fast)
    return recurrent_run(a, layer.recurrent, p, trace=trace, counts=counts)


VOLTAGE = "voltage:"  # run_layers' key prefix of a readout layer's voltage


def run_layers(net: Network, s: torch.Tensor, params: list, counts: list | None = None, upto: int | None = None,
               fast: bool = False):
    """Run input spikes ``s`` [T, N, n_in] (int64 0/1) through the first ``upto`` layers of ``net`` (None: all).

    ``params``: one ``dynamics.LIFParams`` per layer (``lif_params``); ``counts``: None, or one dict per
    layer whose "u_wraps" and "v_saturations" are incremented. Returns {source name: spikes [T, N, n]},
    the input included under ``ir.INPUT``, and a readout layer's voltage v [T, N, n] under ``VOLTAGE + name``
    (its spikes are all 0). ``fast``: spikes and synaptic input travel as float32 holding the same integers where
    that is exact (``s`` may be float32 too), so no feed-forward layer converts to int64 and back; the values
    are the same. A recurrent layer runs on int64 (``recurrent_run``)."""
    outputs = {INPUT: s}
    out_dtype = torch.float32 if fast else torch.int64
    for i, layer in enumerate(net.layers[:upto]):
        c = None if counts is None else counts[i]
        a = layer_inputs(net, i, outputs, out_dtype)
        if layer.recurrent is not None:
            a = a.to(torch.int64)
        if layer.neuron.type == "readout":  # no spikes: its voltage, under VOLTAGE + name
            outputs[layer.name], _, outputs[VOLTAGE + layer.name] = layer_run(layer, a, params[i], True, c, fast)
        else:
            outputs[layer.name] = layer_run(layer, a, params[i], counts=c, fast=fast)
    return outputs


SHARD_ELEMENTS = 1 << 17  # samples per shard: about this many neurons x samples in the widest layer (L2-sized)


def shard_size(net: Network) -> int:
    """Samples per shard of ``simulate``: ``SHARD_ELEMENTS`` over the widest layer's neurons (at least 1)."""
    return max(1, SHARD_ELEMENTS // max(layer.neuron.n for layer in net.layers))


@contextlib.contextmanager
def _intra_op_threads(n: int):
    """torch's intra-op thread count set to ``n`` for the block, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def simulate(net: Network, spikes: np.ndarray, batch_size: int | None = None, progress: bool = False,
             workers: int | None = None, device=None) -> Record:
    """Run input spikes ``spikes`` [T, N, n_in] (0/1) through ``net`` in zero-delay time (recurrent synapses one
    step late), bit-exactly.

    ``batch_size``: samples per shard (memory and speed, not results; None: ``shard_size``); ``workers``:
    shards run at once, each in a thread of its own with one intra-op thread (None: torch's thread count);
    ``progress``: a progress bar over shards. Returns a ``Record`` ("reference") with every layer's spikes
    [T, N, n] as uint8 (and a readout layer's voltage, int32, in ``voltages``); ``device``: the torch device
    to compute on (default the CPU; exact on any); ``info["seconds"]`` is the wall time and
    ``info["overflow"]`` counts, per layer, the u wraps and v saturations that happened."""
    spikes = np.asarray(spikes)
    t0 = time.perf_counter()
    bounds = static_bounds(net)
    device = torch.device("cpu") if device is None else torch.device(device)
    params = [lif_params(layer.neuron, bounds[layer.name], device) for layer in net.layers]
    n_samples = spikes.shape[1]
    outs = [np.zeros((spikes.shape[0], n_samples, layer.neuron.n), np.uint8) for layer in net.layers]
    volts = {layer.name: np.zeros((spikes.shape[0], n_samples, layer.neuron.n), np.int32)
             for layer in net.layers if layer.neuron.type == "readout"}
    workers = max(1, int(workers or torch.get_num_threads()))
    size = max(1, int(batch_size or min(shard_size(net), -(-n_samples // workers))))  # every worker gets a shard
    workers = min(workers, -(-n_samples // size))
    starts = range(0, n_samples, size)

    def run_shard(lo: int) -> list:
        counts = [{"u_wraps": 0, "v_saturations": 0} for _ in net.layers]
        with torch.no_grad():  # grad mode is per thread
            s = torch.from_numpy(spikes[:, lo:lo + size].astype(np.float32)).to(device)
            outputs = run_layers(net, s, params, counts, fast=True)
            for i, layer in enumerate(net.layers):
                outs[i][:, lo:lo + size] = outputs[layer.name].cpu().numpy()
            for name, v in volts.items():
                v[:, lo:lo + size] = outputs[VOLTAGE + name].cpu().numpy()
        return counts

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(starts), desc="reference", unit="shard", leave=False)
    totals = [{"u_wraps": 0, "v_saturations": 0} for _ in net.layers]
    with _intra_op_threads(1) if workers > 1 else contextlib.nullcontext(), ThreadPoolExecutor(workers) as pool:
        for counts in pool.map(run_shard, starts):
            for total, c in zip(totals, counts):
                for k in total:
                    total[k] += c[k]
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return Record("reference", [layer.name for layer in net.layers], outs,
                  info={"seconds": time.perf_counter() - t0,
                        "overflow": {layer.name: c for layer, c in zip(net.layers, totals)}}, voltages=volts)


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
