"""IR -> a Lava process graph of bit-accurate Dense and LIFReset processes (built directly, not via netx).

Lava is imported here and in deploy/ only. This module builds; deploy.backends.lava runs and reads.

Delays: every Dense sends, at step t, what it accumulated from the spikes of step t-1, so layer i
(0-based) first sees sample data at Lava step i + 2. Each layer is a ``LIFReset`` with
``reset_interval = T`` and ``reset_offset = (i + 2) % T``: its u and v are zeroed just before each
sample's first real step. That makes many samples in one run exactly equal to independent runs, also
with biases (which otherwise integrate during the pipeline's warm-up steps), with no padding between
samples. Sample k's output of layer i at zero-delay step tau appears at Lava step k*T + tau + i + 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsnn_lava.ir import Network


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


def run_config():
    """``Loihi2SimCfg(select_tag='fixed_pt')``, plus the (untagged) Extractor's model named explicitly."""
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Extractor: PyLoihiExtractorModel})


@dataclass
class LavaGraph:
    source: object
    denses: list
    lifs: list
    sinks: list
    steps: int


def steps_needed(net: Network, n_samples: int) -> int:
    return n_samples * net.timesteps + len(net.layers)


def build(net: Network, spikes: np.ndarray, record_all: bool = True) -> LavaGraph:
    """Graph that runs input spikes [T, N, n_in] sample after sample.

    Each recorded LIF's spikes go to an ``Extractor``, which streams one array per step to this
    process through a pipe (reading a sink RingBuffer with ``Var.get`` moves one element at a time
    and took 80 % of a run's wall time).
    """
    from lava.proc.dense.process import Dense
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset

    steps = steps_needed(net, spikes.shape[1])
    source = Source(data=source_data(spikes, steps))
    prev, denses, lifs, sinks = source.s_out, [], [], []
    for i, layer in enumerate(net.layers):
        w, e = lava_dense_weights(layer.synapse.weight, layer.synapse.weight_exp)
        dense = Dense(weights=w, weight_exp=e, num_weight_bits=8, name=f"{layer.name}_dense")
        nrn = layer.neuron
        lif = LIFReset(shape=(nrn.n,), vth=nrn.vth, du=nrn.du, dv=nrn.dv, bias_mant=nrn.bias_mant,
                       bias_exp=nrn.bias_exp, reset_interval=net.timesteps,
                       reset_offset=(i + 2) % net.timesteps, name=f"{layer.name}_lif")
        prev.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        if record_all or i == len(net.layers) - 1:
            sink = Extractor(shape=(nrn.n,), buffer_size=EXTRACTOR_BUFFER)
            lif.s_out.connect(sink.in_port)
            sinks.append(sink)
        prev = lif.s_out
        denses.append(dense)
        lifs.append(lif)
    return LavaGraph(source, denses, lifs, sinks, steps)


def source_data(spikes: np.ndarray, steps: int) -> np.ndarray:
    """Input spikes [T, N, n_in] -> a RingBuffer's data [n_in, steps]: sample k's step t in column k*T + t,
    zeros after the last sample (the pipeline drains while they play)."""
    T, N, n_in = spikes.shape
    data = np.zeros((n_in, steps), np.int32)
    data[:, : N * T] = np.transpose(spikes, (2, 1, 0)).reshape(n_in, N * T)
    return data


def unpack(raw: np.ndarray, timesteps: int, layer_index: int, n_samples: int) -> np.ndarray:
    """A layer's recorded spikes [n, steps] (column = Lava step - 1) -> zero-delay spikes [T, N, n]."""
    T = timesteps
    lo = layer_index + 1  # buffer column of Lava step (layer_index + 2)
    block = raw[:, lo: lo + n_samples * T].reshape(raw.shape[0], n_samples, T)
    return np.ascontiguousarray(np.transpose(block, (2, 1, 0))).astype(np.uint8)
