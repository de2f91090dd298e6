"""IR -> lava-dl netx HDF5 (``lava.lib.dl.netx.hdf5.Network``), for networks netx can express.

netx layout (lava-dl 0.6.0, ``lib/dl/netx/hdf5.py``): ``/layer/<i>`` with ``type``; a dense layer has
``shape`` [n_out], ``weight`` [n_out, n_in] (float storage, read as integers), optional ``bias``, and
``neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}``. netx builds a CUBA neuron as
``LIF(vth=vThMant, du=iDecay - 1, dv=vDecay, bias_mant=bias, bias_exp=6)`` and chooses each layer's
weight exponent itself from the integer weights (``optimize_weight_bits``, exact).

What cannot be written, and why (each refused with the layer named):
  * a negative ``weight_exp``: the floor of the shifted SUM cannot be folded into integer weights;
  * a bias that is not a multiple of 64 internal units (netx fixes ``bias_exp = 6``), or whose
    mantissa does not fit 13 bits.
A positive ``weight_exp`` is folded into the weights (``w << e``); netx recovers the exponent.
Write no input layer with a neuron group: netx never wires one to ``net.inp`` (we write ``shape`` only).
Run the file with ``Network(path, reset_interval=T, reset_offset=1)`` to get our per-sample windows.
"""
from __future__ import annotations

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.io import atomic_write
from qsnn_lava.ir import Network

NETX_BIAS_EXP = 6


def netx_layers(net: Network) -> list[dict]:
    """Per layer the netx fields, or QsnnError naming the layer that netx cannot express."""
    out = []
    for i, layer in enumerate(net.layers):
        where = f"layer {i} ({layer.name})"
        syn, nrn = layer.synapse, layer.neuron
        if syn.type != "dense" or nrn.type != "lif":
            raise QsnnError(f"{where}: netx export supports dense synapses into CUBA LIF only")
        if syn.weight_exp < 0:
            raise QsnnError(f"{where}: weight_exp = {syn.weight_exp} < 0 cannot be written to a netx file "
                            "(it floors the summed input); use the qsnn-lava IR for this network")
        bias = nrn.bias_mant.astype(np.int64) << nrn.bias_exp
        if np.any(bias % (1 << NETX_BIAS_EXP)):
            raise QsnnError(f"{where}: bias {int(bias[np.nonzero(bias % 64)[0][0]])} is not a multiple of 64, "
                            "and netx fixes bias_exp = 6")
        bias_mant = bias >> NETX_BIAS_EXP
        if bias_mant.size and (bias_mant.min() < -4096 or bias_mant.max() > 4095):
            raise QsnnError(f"{where}: bias mantissa at bias_exp = 6 exceeds 13 bits")
        out.append({"weight": syn.weight << syn.weight_exp, "bias": bias_mant,
                    "neuron": {"type": "CUBA", "iDecay": nrn.du + 1, "vDecay": nrn.dv, "vThMant": nrn.vth,
                               "refDelay": 1, "gradedSpike": False}})
    return out


def export_netx(net: Network, path) -> None:
    import h5py

    layers = netx_layers(net)
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            g = f.create_group("layer")
            inp = g.create_group("0")
            inp.create_dataset("type", data=b"input")
            inp.create_dataset("shape", data=np.asarray(net.input_shape, np.int64))
            for i, spec in enumerate(layers, start=1):
                lg = g.create_group(str(i))
                lg.create_dataset("type", data=b"dense")
                lg.create_dataset("shape", data=np.asarray([spec["weight"].shape[0]], np.int64))
                lg.create_dataset("weight", data=spec["weight"].astype(np.float32))
                if np.any(spec["bias"]):
                    lg.create_dataset("bias", data=spec["bias"].astype(np.float32))
                ng = lg.create_group("neuron")
                for k, v in spec["neuron"].items():
                    ng.create_dataset(k, data=v)
