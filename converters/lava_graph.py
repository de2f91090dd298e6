"""IR -> a Lava process graph of bit-accurate Dense and LIFReset processes (built directly, not via netx).

Lava is imported only in the process that runs it (deploy.lava_worker, which runs and reads this graph),
through converters.lava_env.

Delays: every synapse process sends, at step t, what it accumulated from the spikes of step t-1. A
layer's *depth* d is one more than the deepest of its sources (the input has depth 0), so it first
sees sample data at Lava step d + 1. Each layer is a ``LIFReset`` with ``reset_interval = T`` and
``reset_offset = (d + 1) % T``: its u and v are zeroed just before each sample's first real step.
That makes many samples in one run exactly equal to independent runs, also with biases (which
otherwise integrate during the pipeline's warm-up steps), with no padding between samples. Sample
k's output of a layer at zero-delay step tau appears at Lava step k*T + tau + d + 1.

A recurrent synapse (``ir.Layer.recurrent``) is a Dense from the layer's LIF ``s_out`` back to its own
``a_in``. The LIF emits zero-delay step tau at Lava step tau + d + 1; the Dense sends what it received
one Lava step later, tau + d + 2, which is when the LIF computes zero-delay step tau + 1: Lava's one-step
Dense delay is exactly the IR's one-step recurrent delay, at every depth. Only the sample boundary needs
care: the spikes of a sample's last step would reach the next sample's first step, which LIFReset cannot
stop (it zeroes u and v before integrating that step's input). So the run pauses after Lava step
k*T + d, the step at which the Dense took in sample k-1's last spikes, and zeroes the Dense's buffer
``a_buff`` (``recurrent_boundaries``); then sample k starts with no recurrent input, as in the IR.

A non-spiking readout layer (``ir.Readout``) is a ``LIFReset`` at the largest threshold ``VTH_MAX``, which
the DRC has proven its v never reaches (so it never fires or resets, as the IR says); the Lava worker
reads its v with a ``Monitor`` and unpacks it like spikes.

A skip synapse from a shallower source would arrive early; it becomes a ``DelaySparse`` whose
per-synapse delay makes up the difference (a delay of e adds e steps to the usual one).

Shapes: every LIF is flat, in the IR's [C, H, W] row-major order. A Conv process wants Lava's
(W, H, C) layout, so its input port is the source's port reshaped to (C, H, W) and transposed, and
its output is transposed back and flattened (Lava virtual ports); Lava's kernel is the torch kernel
transposed to (C_out, W, H, C_in) and flipped in both spatial axes, since Lava convolves where torch
correlates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import INPUT, MAX_DELAY, Network

from qsnn_lava.converters.lava_env import import_lava


def lava_dense_weights(weight: np.ndarray, weight_exp: int) -> tuple[np.ndarray, int]:
    """Integer weights and exponent to hand Lava's Dense so that it computes exactly the IR's sum.

    Lava's bit-accurate Dense (num_weight_bits = 8) drops the lowest bit of every weight when signs
    are mixed. Odd mixed weights therefore go in doubled with the exponent one lower: the shift acts
    on the sum, so ``(sum 2w) >> 1 == sum w`` exactly (netx's optimize_weight_bits does the same).
    """
    weight = np.asarray(weight, np.int64)
    mixed = weight.size and weight.min() < 0 < weight.max()
    if mixed and np.any(weight % 2):
        return 2 * weight, weight_exp - 1
    return weight, weight_exp


EXTRACTOR_BUFFER = 256  # steps an Extractor may run ahead of the reader


def run_config(net: Network | None = None):
    """``Loihi2SimCfg(select_tag='fixed_pt')``, plus the (untagged) Extractor's model named explicitly,
    and the qmem neuron's CPU model when ``net`` has qmem layers."""
    import_lava()
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

    models = {Extractor: PyLoihiExtractorModel}
    if net is not None and any(layer.neuron.type == "qmem" for layer in net.layers):
        from qsnn_lava.converters.qmem_lava import QMEM_MODEL_MAP
        models.update(QMEM_MODEL_MAP)
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)


def lava_conv_weights(weight: np.ndarray) -> np.ndarray:
    """IR (torch) kernel [C_out, C_in, kh, kw] -> Lava's [C_out, kw, kh, C_in], spatially flipped."""
    return np.ascontiguousarray(np.transpose(weight, (0, 3, 2, 1))[:, ::-1, ::-1, :])


def synapse_matrix(syn):
    """The synapse population as a sparse matrix [n_out, n_in] over flat (C, H, W) indices."""
    from scipy.sparse import csr_matrix, vstack

    if syn.type == "dense":
        return csr_matrix(syn.weight)
    import torch

    from qsnn_lava.dynamics import conv_accumulate

    rows, w = [], torch.from_numpy(syn.weight)
    for lo in range(0, syn.n_in, 1024):  # one-hot inputs, a block at a time: column j = response to input j
        eye = torch.zeros(min(1024, syn.n_in - lo), syn.n_in, dtype=torch.int64)
        eye[torch.arange(eye.shape[0]), torch.arange(lo, lo + eye.shape[0])] = 1
        a = conv_accumulate(eye.reshape(-1, *syn.in_shape), w, syn.stride, syn.padding, syn.groups)
        rows.append(csr_matrix(a.reshape(eye.shape[0], -1).numpy()))
    return vstack(rows).T.tocsr()


@dataclass
class LavaGraph:
    """The built Lava processes of one run: ``source`` (the input RingBuffer), ``synapses`` (Dense, Conv and
    DelaySparse processes, main synapse then skips, layer by layer), ``lifs`` (one LIFReset or QMemLIF per
    layer), ``sinks`` (one Extractor per recorded layer), ``steps`` (Lava time steps to run) and ``depths``
    (each layer's depth d: its output at zero-delay step tau of sample k is Lava step k*T + tau + d + 1);
    ``recurrent``: [(Dense process, depth d)] for each layer with a recurrent synapse, whose buffer is zeroed
    between samples (``recurrent_boundaries``)."""

    source: object
    synapses: list
    lifs: list
    sinks: list
    steps: int
    depths: list
    recurrent: list = field(default_factory=list)


def steps_needed(net: Network, n_samples: int) -> int:
    """Lava time steps that run ``n_samples`` samples through ``net``: N * T plus the deepest layer's depth (the
    pipeline's fill)."""
    return n_samples * net.timesteps + max(net.depths())


def message_bits(net: Network, src: str) -> int:
    """``num_message_bits`` of the Lava synapse process fed by source ``src``: the input's bits for direct
    (graded) input (``net.input_bits`` > 1: the process computes ``a = W @ s_in``), else 0 (binary spikes)."""
    return net.input_bits if src == INPUT and net.input_bits > 1 else 0


def _synapse_process(syn, port, lif_port, extra_delay: int, name: str, num_message_bits: int = 0):
    """Build the Lava process of one IR synapse population between two flat ports (each kind of Lava
    process is imported when first needed: Conv's module alone takes 0.4 s, scipy.signal included).
    ``num_message_bits`` > 0: the source sends graded spikes of that many bits (direct input)."""
    if extra_delay > 0:
        from lava.proc.sparse.process import DelaySparse

        if extra_delay > MAX_DELAY:
            raise QsnnError(f"{name}: a skip connection needs {extra_delay} steps of delay; Loihi synapses "
                            f"hold at most {MAX_DELAY}")
        m = synapse_matrix(syn)
        data, e = lava_dense_weights(m.data, syn.weight_exp)
        m.data = data
        proc = DelaySparse(weights=m, delays=extra_delay, weight_exp=e, num_weight_bits=8,
                           num_message_bits=num_message_bits, name=name)
        port.connect(proc.s_in)
        proc.a_out.connect(lif_port)
    elif syn.type == "conv":
        from lava.proc.conv.process import Conv

        c, h, w = syn.in_shape
        proc = Conv(weight=lava_conv_weights(syn.weight), input_shape=(w, h, c), stride=syn.stride[::-1],
                    padding=syn.padding[::-1], groups=syn.groups, num_message_bits=num_message_bits, name=name)
        port.reshape((c, h, w)).transpose([2, 1, 0]).connect(proc.s_in)
        proc.a_out.transpose([2, 1, 0]).reshape((syn.n_out,)).connect(lif_port)
    else:
        from lava.proc.dense.process import Dense

        w, e = lava_dense_weights(syn.weight, syn.weight_exp)
        proc = Dense(weights=w, weight_exp=e, num_weight_bits=8, num_message_bits=num_message_bits, name=name)
        port.connect(proc.s_in)
        proc.a_out.connect(lif_port)
    return proc


def build(net: Network, spikes: np.ndarray, record_all: bool = True) -> LavaGraph:
    """Graph that runs input spikes [T, N, n_in] sample after sample (0/1 spikes, or ``net.input_bits``-bit
    graded values for direct input: the RingBuffer sends them as int32 payloads and the input's synapses
    take them with ``num_message_bits = net.input_bits``).

    Each recorded LIF's spikes go to an ``Extractor``, which streams one array per step to this
    process through a pipe (reading a sink RingBuffer with ``Var.get`` moves one element at a time
    and took 80 % of a run's wall time).
    """
    import_lava()
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset

    steps = steps_needed(net, spikes.shape[1])
    source = Source(data=source_data(spikes, steps))
    ports, depth = {INPUT: source.s_out}, {INPUT: 0}
    synapses, lifs, sinks, recurrent = [], [], [], []
    for i, (layer, d) in enumerate(zip(net.layers, net.depths())):
        nrn = layer.neuron
        kw = dict(shape=(nrn.n,), vth=nrn.vth, du=nrn.du, dv=nrn.dv, bias_mant=nrn.bias_mant,
                  bias_exp=nrn.bias_exp, reset_interval=net.timesteps, reset_offset=(d + 1) % net.timesteps,
                  name=f"{layer.name}_lif")
        if nrn.type == "qmem":  # CPU only (converters.qmem_lava)
            from qsnn_lava.converters.qmem_lava import QMemLIF
            lif = QMemLIF(mem_bits=nrn.mem_bits, mem_shift=nrn.mem_shift, **kw)
        else:
            lif = LIFReset(**kw)
        for j, (src, syn) in enumerate(net.sources(i)):
            name = f"{layer.name}_{'synapse' if j == 0 else f'skip{j - 1}'}"
            synapses.append(_synapse_process(syn, ports[src], lif.a_in, d - 1 - depth[src], name,
                                             message_bits(net, src)))
        if layer.recurrent is not None:  # one Lava step of delay = the IR's one step (module docstring)
            rec = _synapse_process(layer.recurrent, lif.s_out, lif.a_in, 0, f"{layer.name}_recurrent")
            synapses.append(rec)
            recurrent.append((rec, d))
        if record_all or i == len(net.layers) - 1:
            sink = Extractor(shape=(nrn.n,), buffer_size=EXTRACTOR_BUFFER)
            lif.s_out.connect(sink.in_port)
            sinks.append(sink)
        ports[layer.name], depth[layer.name] = lif.s_out, d
        lifs.append(lif)
    return LavaGraph(source, synapses, lifs, sinks, steps, [depth[layer.name] for layer in net.layers], recurrent)


def recurrent_boundaries(graph: LavaGraph, timesteps: int, n_samples: int) -> dict:
    """{Lava step s: [recurrent Dense processes]}: after step s has run, those processes' ``a_buff`` must be
    zeroed, so the next sample's first step gets no recurrent input from the previous sample's last spikes.
    For a recurrent layer of depth d that is step k*T + d for every sample k >= 1 (module docstring)."""
    out = {}
    for proc, d in graph.recurrent:
        for k in range(1, n_samples):
            out.setdefault(k * timesteps + d, []).append(proc)
    return out


def source_data(spikes: np.ndarray, steps: int) -> np.ndarray:
    """Input spikes [T, N, n_in] -> a RingBuffer's data [n_in, steps]: sample k's step t in column k*T + t,
    zeros after the last sample (the pipeline drains while they play)."""
    T, N, n_in = spikes.shape
    data = np.zeros((n_in, steps), np.int32)
    data[:, : N * T] = np.transpose(spikes, (2, 1, 0)).reshape(n_in, N * T)
    return data


def unpack(raw: np.ndarray, timesteps: int, depth: int, n_samples: int, dtype=np.uint8) -> np.ndarray:
    """A layer's recorded spikes [n, steps] (column = Lava step - 1) -> zero-delay spikes [T, N, n] of ``dtype``
    (a readout's voltage read by a Monitor unpacks the same way, as int32)."""
    T = timesteps
    lo = depth  # buffer column of Lava step depth + 1
    block = raw[:, lo: lo + n_samples * T].reshape(raw.shape[0], n_samples, T)
    return np.ascontiguousarray(np.transpose(block, (2, 1, 0))).astype(dtype)
