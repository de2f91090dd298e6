"""IR -> lava-dl netx HDF5 (``lava.lib.dl.netx.hdf5.Network``), for networks netx can express, and back.

netx layout (lava-dl 0.6.0, ``lib/dl/netx/hdf5.py``): ``/layer/<i>`` with ``type``; a dense layer has
``shape`` [n_out], ``weight`` [n_out, n_in] (float storage, read as integers), optional ``bias``, and
``neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}``. A conv layer has ``shape`` (C, H, W)
in torch order (netx reverses it to Lava's W, H, C), ``weight`` [C_out, C_in/groups, kh, kw] in torch's
layout (netx flips and transposes it for Lava's Conv), ``stride``, ``padding``, ``dilation``, ``groups`` and
a per-channel ``bias``. ``stride``, ``padding`` and ``dilation`` are (H, W) pairs, or one number for both:
netx's ``create_conv`` reverses a pair for Lava's (W, H) Conv exactly as it reverses ``shape`` and the
kernel axes, so the IR's (H, W) pairs are written and read as they are, non-square ones included. A ``flatten`` layer before a dense layer makes netx feed it the conv map in torch's
(C, H, W) order, which is the IR's flat order, so dense weights need no permutation. Sum pooling is a
depthwise conv with weights 1 (netx has no pool layer of its own). netx builds a CUBA neuron as
``LIF(vth=vThMant, du=iDecay - 1, dv=vDecay, bias_mant=bias, bias_exp=6)`` and chooses each layer's
weight exponent itself from the integer weights (``optimize_weight_bits``, exact).

A layer with a recurrent synapse is netx's ``dense_rec`` (lava-dl's ``RecurrentDense`` block: the neuron's
``s_out`` -> a Dense of ``weight_rec`` [n, n] -> its own ``a_in``, one Lava step of delay, which is the IR's
one-step recurrence, docs/integer-semantics.md). netx optimizes ``weight`` and ``weight_rec`` together
(``np.hstack``, one exponent and sign mode for both), so the two folded matrices together must be one
Loihi-legal weight matrix. A netx run with ``reset_interval`` alone carries a sample's last spikes into the
next sample through ``weight_rec``; the Lava worker zeroes the block's recurrent buffer between samples
(``lava_worker.run_netx_in_process``), as it does for our own graph.

What cannot be written, and why (each refused with the layer named):
  * direct (graded) input (``Network.input_bits`` > 1): a netx file records no input message bits;
  * a negative ``weight_exp`` (main or recurrent): the floor of the shifted SUM cannot be folded into
    integer weights;
  * a recurrent synapse on a conv layer (netx has no recurrent conv block), or whose folded weights and the
    main weights do not fit one 8-bit weight matrix together (netx gives both one exponent);
  * a bias that is not a multiple of 64 internal units (netx fixes ``bias_exp = 6``), or whose
    mantissa does not fit 13 bits.
A positive ``weight_exp`` is folded into the weights (``w << e``); netx recovers the exponent.
Write no input layer with a neuron group: netx never wires one to ``net.inp`` (we write ``shape`` only).
Run the file with ``Network(path, reset_interval=T, reset_offset=1)`` to get our per-sample windows.
"""
from __future__ import annotations

import numpy as np

from qsnn_lava.errors import QsnnError, about
from qsnn_lava.io import atomic_write
from qsnn_lava.ir import Network

NETX_BIAS_EXP = 6


def netx_layers(net: Network) -> list[dict]:
    """Per layer the netx fields, or QsnnError naming the layer that netx cannot express."""
    if net.input_bits > 1:
        raise QsnnError(f"input: {net.input_bits}-bit direct (graded) input cannot be written to a netx file (it "
                        "records no input message bits; lava-dl's Network takes input_message_bits as an argument "
                        "and its Dense reads binary spikes unless told); run this network from the qsnn-lava IR")
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
        if layer.recurrent is not None:
            spec.update(type="dense_rec", weight_rec=_netx_recurrent(layer, where))
        if syn.type == "conv":  # netx's conv bias is one value per channel
            per_channel = bias_mant.reshape(layer.shape[0], -1)
            if np.any(per_channel != per_channel[:, :1]):
                raise QsnnError(f"{where}: the bias differs within a channel; a netx conv bias is per channel")
            spec.update(bias=per_channel[:, 0], stride=np.asarray(syn.stride, np.int64),
                        padding=np.asarray(syn.padding, np.int64), groups=syn.groups)
        out.append({**spec,
                    "neuron": {"type": "CUBA", "iDecay": nrn.du + 1, "vDecay": nrn.dv, "vThMant": nrn.vth,
                               "refDelay": 1, "gradedSpike": False}})
    return out


def _netx_recurrent(layer, where: str) -> np.ndarray:
    """The folded recurrent weight (``weight << weight_exp``) of a dense layer for netx's ``dense_rec``, or
    QsnnError naming what netx cannot hold (module docstring)."""
    from qsnn_lava.ir import weight_limits

    syn, rec = layer.synapse, layer.recurrent
    if syn.type != "dense":
        raise QsnnError(f"{where}: a recurrent synapse on a {syn.type} layer cannot be written to netx (its only "
                        "recurrent block is dense_rec); run this network from the qsnn-lava IR instead")
    if rec.weight_exp < 0:
        raise QsnnError(f"{where}: recurrent weight_exp = {rec.weight_exp} < 0 cannot be written to a netx file "
                        "(it floors the summed input); use the qsnn-lava IR for this network")
    w_rec = rec.weight << rec.weight_exp
    both = np.hstack([syn.weight << syn.weight_exp, w_rec])
    lo, hi = weight_limits(both)
    if both.min() < lo or both.max() > hi:
        raise QsnnError(f"{where}: netx's dense_rec gives the main and recurrent weights one exponent and sign mode, "
                        f"and together (folded) they span [{int(both.min())}, {int(both.max())}], beyond [{lo}, {hi}]; "
                        "use the qsnn-lava IR for this network")
    return w_rec


def export_netx(net: Network, path) -> None:
    """Write ``net`` to ``path`` as a lava-dl netx HDF5 file, atomically.

    Layout: ``/layer/0`` the input (``shape`` only), then one group per layer (``netx_layers``), with a
    ``flatten`` layer before a dense layer that follows a conv map; a recurrent layer is a ``dense_rec`` with a
    ``weight_rec`` dataset. QsnnError naming the layer when netx cannot express it (skips, qmem, a negative
    weight_exp, a bias netx cannot hold, recurrence netx cannot hold)."""
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
                if spec["type"] != "conv" and len(prev_shape) == 3:  # netx flattens (W, H, C) to torch's CHW
                    g.create_group(str(i)).create_dataset("type", data=b"flatten")
                    i += 1
                lg = g.create_group(str(i))
                i, prev_shape = i + 1, tuple(spec["shape"])
                lg.create_dataset("type", data=spec["type"].encode())
                lg.create_dataset("shape", data=np.asarray(spec["shape"], np.int64))
                lg.create_dataset("weight", data=spec["weight"].astype(np.float32))
                if "weight_rec" in spec:
                    lg.create_dataset("weight_rec", data=spec["weight_rec"].astype(np.float32))
                if spec["type"] == "conv":
                    for k in ("stride", "padding", "groups"):
                        lg.create_dataset(k, data=spec[k])
                    lg.create_dataset("dilation", data=np.ones(2, np.int64))
                if np.any(spec["bias"]):
                    lg.create_dataset("bias", data=spec["bias"].astype(np.float32))
                ng = lg.create_group("neuron")
                for k, v in spec["neuron"].items():
                    ng.create_dataset(k, data=v)


# ------------------------------------------------------------------------------------------ import
SUPPORTED_NEURONS = ("CUBA", "LOIHI")
NEURON_FIELDS = ("iDecay", "vDecay", "vThMant")
_REFIX = "the netx file is corrupt or not one lava-dl's netx loads"
_NUMBERS = "iuf"  # netx stores weights and parameters as floats or integers


def _text(r, g, key: str) -> str:
    """A netx string dataset (``type``): bytes or str, scalar or a one-element array."""
    import h5py

    d = g.get(key) if key in g else None
    if not isinstance(d, h5py.Dataset):
        raise r.fail(g, f"'{key}' is missing" if d is None else f"'{key}' is not a dataset")
    if d.dtype.kind not in "SOU" or (d.shape or ()) not in ((), (1,)):
        raise r.fail(g, f"'{key}' must be one text string, not a {d.dtype} dataset of shape {d.shape}")
    v = np.asarray(d[()]).reshape(-1)[0]
    try:
        return v.decode() if isinstance(v, bytes) else str(v)
    except UnicodeDecodeError:
        raise r.fail(g, f"'{key}' is not text") from None


def _number(r, g, key: str, lo: int, hi: int) -> int:
    """A scalar netx parameter as a whole number in [lo, hi]; a fraction is refused, since netx would
    pass it on (or truncate it) rather than run an integer network."""
    from qsnn_lava.ir import whole_number

    r.shape(g, key, (0, 1), _NUMBERS)
    v = r.read(g, key, _NUMBERS).reshape(-1)
    if v.size != 1:
        raise r.fail(g, f"'{key}' must hold one number, it holds {v.size}")
    try:
        return whole_number(v[0], f"'{key}'", lo, hi)
    except QsnnError as e:
        raise r.fail(g, f"{e} (an integer mantissa)") from None


def _flag(r, g, key: str) -> bool:
    r.shape(g, key, (0, 1), "b" + _NUMBERS)
    v = r.read(g, key, "b" + _NUMBERS).reshape(-1)
    if v.size != 1 or v[0] not in (0, 1):
        raise r.fail(g, f"'{key}' must be true or false")
    return bool(v[0])


def _int_array(values, where: str, field: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise QsnnError(f"{where}: {field} holds NaN or Inf; the file is corrupt")
    out = np.trunc(arr).astype(np.int64)  # netx reads weights with astype(int): truncation
    if not np.array_equal(out, arr):
        raise QsnnError(f"{where}: {field} holds non-integer values; netx would truncate them, so the file is "
                        "not an integer network")
    return out


def _pair(r, lg, key: str, default: int, lo: int) -> tuple:
    """A conv parameter as an (H, W) pair: one number for both axes, or a pair in (H, W) order."""
    from qsnn_lava.ir import MAX_NEURONS, whole_number

    if key not in lg:
        return default, default
    r.shape(lg, key, (0, 1), _NUMBERS)
    v = r.read(lg, key, _NUMBERS).reshape(-1)
    if v.size not in (1, 2):
        raise r.fail(lg, f"'{key}' must be one number or an (H, W) pair, it holds {v.size}")
    try:
        h, w = (whole_number(x, f"'{key}'", lo, MAX_NEURONS) for x in (v if v.size == 2 else (v[0], v[0])))
    except QsnnError as e:
        raise r.fail(lg, str(e)) from None
    return h, w


def _conv_from_netx(r, lg, in_shape, shape: tuple, where: str):
    """A netx conv layer (torch-layout weight, (H, W) stride/padding, dilation 1) as an IR Conv."""
    from qsnn_lava.ir import MAX_ELEMENTS, MAX_NEURONS, Conv

    if in_shape is None or len(in_shape) != 3:
        raise QsnnError(f"{where}: a conv layer needs a (C, H, W) input; give the input layer a 3-D shape")
    if len(shape) != 3:
        raise QsnnError(f"{where}: a conv layer's shape must be (C, H, W), got {shape}")
    wshape = r.shape(lg, "weight", (4, 5), _NUMBERS)
    if len(wshape) == 5 and wshape[4] != 1:
        raise QsnnError(f"{where}: conv weight {wshape} must be [C_out, C_in/groups, kh, kw] (a 5th axis of 1)")
    if int(np.prod(wshape)) > MAX_ELEMENTS:
        raise QsnnError(f"{where}: conv weight {wshape} holds more than {MAX_ELEMENTS} elements")
    stride, padding = _pair(r, lg, "stride", 1, 1), _pair(r, lg, "padding", 0, 0)
    if _pair(r, lg, "dilation", 1, 1) != (1, 1):
        raise QsnnError(f"{where}: dilated convolutions are not supported by the qsnn-lava IR")
    groups = _number(r, lg, "groups", 1, MAX_NEURONS) if "groups" in lg else 1
    w = _int_array(r.read(lg, "weight", _NUMBERS), where, "weight")
    try:
        conv = Conv(w.reshape(wshape[:4]), tuple(in_shape), stride=stride, padding=padding, groups=groups)
    except QsnnError as e:
        raise QsnnError(f"{where}: {e}") from None
    if conv.out_shape != tuple(shape):
        raise QsnnError(f"{where}: shape {shape} does not match the convolution's output {conv.out_shape}")
    return conv


def _dense_from_netx(r, lg, n_out: int, where: str, key: str = "weight"):
    """Dataset ``key`` (``weight``, or a dense_rec's ``weight_rec``) of a netx layer as an IR Dense, its size
    checked against the layer's ``n_out`` neurons before it is read."""
    from qsnn_lava.ir import MAX_ELEMENTS, Dense

    wshape = r.shape(lg, key, (1, 2), _NUMBERS)
    if int(np.prod(wshape)) > MAX_ELEMENTS:
        raise QsnnError(f"{where}: dense {key} {wshape} holds more than {MAX_ELEMENTS} elements")
    rows = wshape[0] if len(wshape) == 2 else n_out
    if rows != n_out or int(np.prod(wshape)) % n_out:
        raise QsnnError(f"{where}: {key} {wshape} does not have one row per neuron of the declared shape "
                        f"({n_out} neurons); the file is inconsistent")
    w = _int_array(r.read(lg, key, _NUMBERS), where, key)
    return Dense(w.reshape(n_out, -1))


def _neuron_from_netx(r, lg, syn, kind: str, where: str):
    """The CUBA/LOIHI neuron group of a layer as an IR LIF: vth = vThMant, du = iDecay - 1, dv = vDecay,
    bias_exp = 6 (netx's mapping); everything else is refused by name."""
    from qsnn_lava.ir import LIF

    ng = lg["neuron"]
    if not hasattr(ng, "keys"):
        raise QsnnError(f"{where}: 'neuron' must be a group")
    ntype = _text(r, ng, "type")
    if ntype not in SUPPORTED_NEURONS:
        raise QsnnError(f"{where}: neuron type '{ntype[:40]}' is not supported (only "
                        f"{', '.join(SUPPORTED_NEURONS)}: SDNN, RF and ALIF neurons have no IR form)")
    for key in NEURON_FIELDS:
        if key not in ng:
            raise QsnnError(f"{where}: the neuron has no '{key}'; a {ntype} neuron needs {', '.join(NEURON_FIELDS)}")
    if "gradedSpike" in ng and _flag(r, ng, "gradedSpike"):
        raise QsnnError(f"{where}: graded spikes are not supported (binary spikes only)")
    reg = (-(1 << 31), (1 << 31) - 1)  # Network.validate names any value a Loihi register cannot hold
    vth, i_decay, dv = (_number(r, ng, k, *reg) for k in ("vThMant", "iDecay", "vDecay"))
    bias = None
    if "bias" in lg:
        channels = syn.out_shape[0] if kind == "conv" else syn.n_out
        r.shape(lg, "bias", (0, 1), _NUMBERS)
        bias = _int_array(r.read(lg, "bias", _NUMBERS), where, "bias").reshape(-1)
        if bias.size != channels:
            per = "one per output channel" if kind == "conv" else "one per neuron"
            raise QsnnError(f"{where}: bias holds {bias.size} values; the layer needs {channels} ({per})")
        if kind == "conv":  # one value per channel -> every neuron of the channel
            bias = np.repeat(bias, syn.n_out // channels)
    return LIF(syn.n_out, vth=vth, du=i_decay - 1, dv=dv, bias_mant=bias,
               bias_exp=NETX_BIAS_EXP if bias is not None else 0)


def _input_shape(r, lg, where: str) -> tuple | None:
    from qsnn_lava.ir import MAX_NEURONS

    if "neuron" in lg:
        ntype = _text(r, lg["neuron"], "type") if hasattr(lg["neuron"], "keys") and "type" in lg["neuron"] else ""
        if ntype == "SDNN":
            raise QsnnError(f"{where}: the input layer has an SDNN neuron (netx builds a sigma-delta Delta neuron "
                            "that sends graded changes); qsnn-lava feeds binary spikes to the first synapse layer, "
                            "so write the input layer with 'shape' only")
        raise QsnnError(f"{where}: an input layer with a {ntype or 'neuron'} group (graded input driven through "
                        "the bias) is not supported; qsnn-lava feeds binary spikes to the first synapse layer")
    return _shape(r, lg, where, MAX_NEURONS) if "shape" in lg else None  # netx: then the first layer's input


def _shape(r, lg, where: str, limit: int) -> tuple:
    from qsnn_lava.ir import whole_number

    r.shape(lg, "shape", (0, 1), _NUMBERS)
    v = r.read(lg, "shape", _NUMBERS).reshape(-1)
    if not 1 <= v.size <= 3:
        raise QsnnError(f"{where}: shape {v.tolist()[:5]} must have 1 to 3 axes")
    shape = tuple(whole_number(d, f"{where}: shape", 1, limit) for d in v)
    n = int(np.prod(shape))
    if n > limit:
        raise QsnnError(f"{where}: shape {shape} declares {n} neurons; a layer holds at most {limit} "
                        "(one Loihi 2 chip)")
    return shape


def import_netx(path, timesteps: int) -> Network:
    """A lava-dl netx file of CUBA/LOIHI dense, dense_rec and conv layers -> IR, with netx's own parameter mapping:
    ``vth = vThMant, du = iDecay - 1, dv = vDecay, bias_mant = bias, bias_exp = 6`` and integer weights
    (netx's optimize_weight_bits is exact, so the synaptic sum is the sum of these integers).
    A netx file carries no time-step count: give the ``timesteps`` the network runs for.

    The file is untrusted: every field netx reads is checked (type, presence, integer values, sizes
    against the weights and against one chip) before arrays are read; anything else is a QsnnError."""
    from pathlib import Path

    from qsnn_lava.io import open_hdf5

    path = Path(path)
    f = open_hdf5(path, "netx file", "pass a lava-dl netx .net file")
    with about(path):
        try:
            with f:
                net = _read_netx(f, path, timesteps)
        except (OSError, RuntimeError, KeyError) as e:  # h5py on a damaged file
            raise QsnnError(f"the HDF5 file is damaged ({e.__class__.__name__}); {_REFIX}") from None
        return net.validate()


def _read_netx(f, path, timesteps: int) -> Network:
    import h5py

    from qsnn_lava.ir import MAX_NEURONS, H5Reader, Layer

    if not isinstance(f.get("layer"), h5py.Group):
        raise QsnnError(f"'{path}' has no /layer group: not a netx file")
    r = H5Reader(_REFIX)
    layers, input_shape = [], None
    groups = r.numbered(f, "layer", at_least=1)
    for i, lg in enumerate(groups):
        where = f"'{path}' layer {i}"
        kind = _text(r, lg, "type")
        if kind == "input":
            if i != 0:
                raise QsnnError(f"{where}: an input layer must come first")
            input_shape = _input_shape(r, lg, where)
            continue
        if kind == "flatten":  # netx flattens to torch's (C, H, W) order: the IR's flat order already
            continue
        if kind not in ("dense", "dense_rec", "conv"):
            raise QsnnError(f"{where}: layer type '{kind[:40]}' is not supported by the qsnn-lava IR "
                            "(dense, dense_rec, conv and flatten)")
        for key in ("weight", "shape") + (("weight_rec",) if kind == "dense_rec" else ()):
            if key not in lg:
                raise QsnnError(f"{where}: {kind} layer without '{key}'")
        if "neuron" not in lg:
            if kind != "conv":
                raise QsnnError(f"layer {i} has no neuron: netx runs it as a non-spiking integrator, which the IR "
                                "has no neuron for")
            raise QsnnError(f"{where}: conv layer without 'neuron'")
        if "delay" in lg:
            raise QsnnError(f"{where}: synaptic delays are not supported by the qsnn-lava IR")
        shape = _shape(r, lg, where, MAX_NEURONS)
        if kind == "conv":
            syn = _conv_from_netx(r, lg, layers[-1].shape if layers else input_shape, shape, where)
        else:
            syn = _dense_from_netx(r, lg, int(np.prod(shape)), where)
        rec = _dense_from_netx(r, lg, syn.n_out, where, "weight_rec") if kind == "dense_rec" else None
        if rec is not None and rec.n_in != syn.n_out:
            raise QsnnError(f"{where}: weight_rec {rec.weight.shape} must be [n, n] with n = {syn.n_out} (the layer's "
                            "neurons); the file is inconsistent")
        neuron = _neuron_from_netx(r, lg, syn, kind, where)
        w = syn.weight if rec is None else np.hstack([syn.weight, rec.weight])
        bits = int(np.ceil(np.log2(int(np.abs(w).max()) + 1))) + 1 if w.size and np.abs(w).max() else 1
        layers.append(Layer(f"layer{i}", syn, neuron, weight_bits=min(bits, 9), recurrent=rec))
    if not layers:
        raise QsnnError(f"'{path}' has no dense or conv layers")
    return Network(input_shape or (layers[0].synapse.n_in,), layers, timesteps,
                   meta={"imported_from": str(path), "format": "lava-dl netx"})
