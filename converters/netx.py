"""IR -> lava-dl netx HDF5 (``lava.lib.dl.netx.hdf5.Network``), for networks netx can express, and back.

netx layout (lava-dl 0.6.0, ``lib/dl/netx/hdf5.py``): ``/layer/<i>`` with ``type``; a dense layer has
``shape`` [n_out], ``weight`` [n_out, n_in] (float storage, read as integers), optional ``bias``, and
``neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}``. A conv layer has ``shape`` (C, H, W)
in torch order (netx reverses it to Lava's W, H, C), ``weight`` [C_out, C_in/groups, kh, kw] in torch's
layout (netx flips and transposes it for Lava's Conv), ``stride``, ``padding``, ``dilation``, ``groups`` and
a per-channel ``bias``. A ``flatten`` layer before a dense layer makes netx feed it the conv map in torch's
(C, H, W) order, which is the IR's flat order, so dense weights need no permutation. Sum pooling is a
depthwise conv with weights 1 (netx has no pool layer of its own). netx builds a CUBA neuron as
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
        if syn.type not in ("dense", "conv") or nrn.type != "lif":
            raise QsnnError(f"{where}: netx export supports dense and conv synapses into CUBA LIF only (this "
                            f"layer is {syn.type} into {nrn.type}); run this network from the qsnn-lava IR instead")
        if syn.type == "conv" and (syn.stride[0] != syn.stride[1] or syn.padding[0] != syn.padding[1]):
            raise QsnnError(f"{where}: stride {syn.stride} / padding {syn.padding} differ between the axes; netx "
                            "files do not say which axis comes first, so only square ones are written")
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
        spec = {"type": syn.type, "weight": syn.weight << syn.weight_exp, "bias": bias_mant, "shape": layer.shape}
        if syn.type == "conv":  # netx's conv bias is one value per channel
            per_channel = bias_mant.reshape(layer.shape[0], -1)
            if np.any(per_channel != per_channel[:, :1]):
                raise QsnnError(f"{where}: the bias differs within a channel; a netx conv bias is per channel")
            spec.update(bias=per_channel[:, 0], stride=syn.stride[0], padding=syn.padding[0], groups=syn.groups)
        out.append({**spec,
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
            i, prev_shape = 1, tuple(net.input_shape)
            for spec in layers:
                if spec["type"] == "dense" and len(prev_shape) == 3:  # netx flattens (W, H, C) to torch's CHW
                    g.create_group(str(i)).create_dataset("type", data=b"flatten")
                    i += 1
                lg = g.create_group(str(i))
                i, prev_shape = i + 1, tuple(spec["shape"])
                lg.create_dataset("type", data=spec["type"].encode())
                lg.create_dataset("shape", data=np.asarray(spec["shape"], np.int64))
                lg.create_dataset("weight", data=spec["weight"].astype(np.float32))
                if spec["type"] == "conv":
                    for k in ("stride", "padding", "groups"):
                        lg.create_dataset(k, data=spec[k])
                    lg.create_dataset("dilation", data=1)
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


def _conv_from_netx(lg, w: np.ndarray, in_shape, shape: tuple, where: str):
    """A netx conv layer (torch-layout weight, square stride/padding, dilation 1) as an IR Conv."""
    from qsnn_lava.ir import Conv

    if in_shape is None or len(in_shape) != 3:
        raise QsnnError(f"{where}: a conv layer needs a (C, H, W) input; give the input layer a 3-D shape")
    params = {}
    for k, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
        v = np.atleast_1d(lg[k][()]) if k in lg else np.asarray([default])
        if v.size > 1 and np.any(v != v.reshape(-1)[0]):
            raise QsnnError(f"{where}: {k} {v.tolist()} differs between the axes; only square ones are read "
                            "(netx files do not say which axis comes first)")
        params[k] = int(v.reshape(-1)[0])
    if params.pop("dilation") != 1:
        raise QsnnError(f"{where}: dilated convolutions are not supported by the qsnn-lava IR")
    try:
        conv = Conv(w.reshape(w.shape[:4]), tuple(in_shape), **params)
    except QsnnError as e:
        raise QsnnError(f"{where}: {e}") from None
    if conv.out_shape != tuple(shape):
        raise QsnnError(f"{where}: shape {shape} does not match the convolution's output {conv.out_shape}")
    return conv


def import_netx(path, timesteps: int) -> Network:
    """A lava-dl netx file of CUBA/LOIHI dense and conv layers -> IR, with netx's own parameter mapping:
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
            if kind == "flatten":  # netx flattens to torch's (C, H, W) order: the IR's flat order already
                continue
            if kind not in ("dense", "conv"):
                raise QsnnError(f"{where}: layer type '{kind}' is not supported by the qsnn-lava IR "
                                "(dense, conv and flatten)")
            for missing in ("weight", "neuron", "shape"):
                if missing not in lg:
                    raise QsnnError(f"{where}: {kind} layer without '{missing}'")
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
            shape = tuple(int(d) for d in np.atleast_1d(lg["shape"][()]))
            if kind == "conv":
                prev = layers[-1].shape if layers else input_shape
                syn = _conv_from_netx(lg, w, prev, shape, where)
            else:
                syn = Dense(w.reshape(int(np.prod(shape)), -1) if w.ndim == 1 else w)
            bias = _int_array(lg["bias"][()], where, "bias") if "bias" in lg else None
            if bias is not None and kind == "conv":  # one value per channel -> every neuron of the channel
                bias = np.repeat(bias.reshape(-1), syn.n_out // bias.size)
            neuron = LIF(syn.n_out, vth=int(_scalar(ng, "vThMant")), du=int(_scalar(ng, "iDecay")) - 1,
                         dv=int(_scalar(ng, "vDecay")), bias_mant=bias, bias_exp=NETX_BIAS_EXP if bias is not None else 0)
            bits = int(np.ceil(np.log2(int(np.abs(w).max()) + 1))) + 1 if w.size and np.abs(w).max() else 1
            layers.append(Layer(f"layer{i}", syn, neuron, weight_bits=min(bits, 9)))
    if not layers:
        raise QsnnError(f"'{path}' has no dense or conv layers")
    net = Network(input_shape or (layers[0].synapse.n_in,), layers, timesteps,
                  meta={"imported_from": str(path), "format": "lava-dl netx"})
    try:
        return net.validate()
    except QsnnError as e:
        raise QsnnError(f"'{path}': {e}") from None
