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
        if layer.skips:
            raise QsnnError(f"{where}: has a residual skip connection, which netx cannot express (it loads "
                            "sequential networks only); run this network from the qsnn-lava IR instead")
        if syn.type != "dense" or nrn.type != "lif":
            raise QsnnError(f"{where}: netx export supports dense synapses into CUBA LIF only (this layer is "
                            f"{syn.type} into {nrn.type}); run this network from the qsnn-lava IR instead")
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


# ------------------------------------------------------------------------------------------ import
SUPPORTED_NEURONS = ("CUBA", "LOIHI")


def _scalar(g, key):
    v = g[key][()]
    v = v.reshape(-1)[0] if isinstance(v, np.ndarray) else v
    return v.decode() if isinstance(v, bytes) else v


def _int_array(values, where: str, field: str) -> np.ndarray:
    arr = np.asarray(values)
    out = np.trunc(arr).astype(np.int64)  # netx reads weights with astype(int): truncation
    if not np.array_equal(out, arr):
        raise QsnnError(f"{where}: {field} holds non-integer values; netx would truncate them, so the file is "
                        "not an integer network")
    return out


def import_netx(path, timesteps: int) -> Network:
    """A lava-dl netx file of CUBA/LOIHI dense layers -> IR, with netx's own parameter mapping:
    ``vth = vThMant, du = iDecay - 1, dv = vDecay, bias_mant = bias, bias_exp = 6`` and integer weights
    (netx's optimize_weight_bits is exact, so the synaptic sum is the sum of these integers).
    A netx file carries no time-step count: give the ``timesteps`` the network runs for."""
    import h5py
    from pathlib import Path

    from qsnn_lava.ir import LIF, Dense, Layer

    path = Path(path)
    if not path.is_file():
        raise QsnnError(f"netx file '{path}' not found")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise QsnnError(f"'{path}' is not an HDF5 file; pass a lava-dl netx .net file") from None
    with f:
        if "layer" not in f:
            raise QsnnError(f"'{path}' has no /layer group: not a netx file")
        g = f["layer"]
        layers, input_shape = [], None
        for i in sorted(int(k) for k in g):
            lg, where = g[str(i)], f"'{path}' layer {i}"
            kind = _scalar(lg, "type")
            if kind == "input":
                if "neuron" in lg:
                    raise QsnnError(f"{where}: an input layer with a neuron group (graded input driven through "
                                    "the bias) is not supported; qsnn-lava feeds binary spikes to the first "
                                    "synapse layer")
                input_shape = tuple(int(d) for d in np.atleast_1d(lg["shape"][()]))
                continue
            if kind == "flatten":
                continue
            if kind != "dense":
                raise QsnnError(f"{where}: layer type '{kind}' is not supported by the qsnn-lava IR yet "
                                "(dense only)")
            for missing in ("weight", "neuron"):
                if missing not in lg:
                    raise QsnnError(f"{where}: dense layer without '{missing}'")
            ng = lg["neuron"]
            ntype = _scalar(ng, "type")
            if ntype not in SUPPORTED_NEURONS:
                raise QsnnError(f"{where}: neuron type '{ntype}' is not supported (only "
                                f"{', '.join(SUPPORTED_NEURONS)}: SDNN, RF and ALIF neurons have no IR form)")
            if "delay" in lg:
                raise QsnnError(f"{where}: synaptic delays are not supported by the qsnn-lava IR")
            if "gradedSpike" in ng and bool(_scalar(ng, "gradedSpike")):
                raise QsnnError(f"{where}: graded spikes are not supported (binary spikes only)")
            w = _int_array(lg["weight"][()], where, "weight")
            if w.ndim == 1:
                w = w.reshape(int(np.prod(lg["shape"][()])), -1)
            bias = _int_array(lg["bias"][()], where, "bias") if "bias" in lg else None
            neuron = LIF(w.shape[0], vth=int(_scalar(ng, "vThMant")), du=int(_scalar(ng, "iDecay")) - 1,
                         dv=int(_scalar(ng, "vDecay")), bias_mant=bias, bias_exp=NETX_BIAS_EXP if bias is not None else 0)
            bits = int(np.ceil(np.log2(int(np.abs(w).max()) + 1))) + 1 if w.size and np.abs(w).max() else 1
            layers.append(Layer(f"layer{i}", Dense(w), neuron, weight_bits=min(bits, 9)))
    if not layers:
        raise QsnnError(f"'{path}' has no dense layers")
    net = Network(input_shape or (layers[0].synapse.n_in,), layers, timesteps,
                  meta={"imported_from": str(path), "format": "lava-dl netx"})
    try:
        return net.validate()
    except QsnnError as e:
        raise QsnnError(f"'{path}': {e}") from None
