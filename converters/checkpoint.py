"""Checkpoint (or in-memory model) -> IR.

The IR carries exactly the integers the model's eval forward uses (each synapse module's
``to_ir()``, ``QuantConv.integer_bias`` and the LIF's vth, du, dv, a learned threshold's deployed integer included) and the
input's message bits (``Network.input_bits``: 1 for the rate code, b for b-bit direct input): conversion adds no
rounding of its own. What the target cannot hold is refused
by ``Network.validate`` with the layer, field, value and limit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from qsnn_lava.errors import QsnnError, about
from qsnn_lava.io import load_checkpoint
from qsnn_lava.ir import LIF, Layer, Network, QMem, Readout, Skip
from qsnn_lava.models import QSNN, build_model
from qsnn_lava.neurons import Readout as ReadoutNeuron


def model_to_ir(model: QSNN, meta: dict | None = None, validate: bool = True) -> Network:
    """The IR of ``model`` (in eval mode): the integers its eval forward uses, with no rounding of its own.

    Each layer gets the synapse's ``to_ir()``, the folded BatchNorm bias (``integer_bias``) where there is one,
    and the neuron's vth, du, dv (and mem_bits, mem_shift for qmem; an ``ir.Readout`` for a readout output). ``meta`` is added to the network's
    meta (quant, bits, neuron). With ``validate`` the register widths are checked (QsnnError "cannot deploy
    this model: ..."); without, only the structure."""
    layers = []
    for layer in model.layers:
        n = layer.neuron
        try:
            bias_mant, bias_exp = (layer.synapse.integer_bias() if hasattr(layer.synapse, "integer_bias")
                                   else (None, 0))
            synapse = layer.synapse.to_ir()
        except QsnnError as e:
            raise QsnnError(f"layer '{layer.name}': {e}") from None
        layers.append(Layer(
            name=layer.name,
            synapse=synapse,
            neuron=(QMem(n=n.n, vth=n.vth, du=n.du, dv=n.dv, bias_mant=bias_mant, bias_exp=bias_exp,
                         mem_bits=n.mem_bits, mem_shift=n.mem_shift) if hasattr(n, "mem_bits")
                    else Readout(n=n.n, du=n.du, dv=n.dv, bias_mant=bias_mant, bias_exp=bias_exp)
                    if isinstance(n, ReadoutNeuron)
                    else LIF(n=n.n, vth=n.vth, du=n.du, dv=n.dv, bias_mant=bias_mant, bias_exp=bias_exp)),
            weight_bits=layer.synapse.bits,
            skips=[Skip(src, m.to_ir()) for src, m in zip(layer.skip_sources, layer.skips)],
        ))
    cfg = model.config
    shape = cfg["input_shape"] or (int(cfg["sizes"][0]),)
    net = Network(input_shape=tuple(shape), layers=layers, timesteps=int(cfg["timesteps"]),
                  meta={"quant": cfg["quant"], "bits": int(cfg["bits"]), "neuron": cfg["neuron"],
                        **(meta or {})}, input_bits=model.input_bits)
    if not validate:
        net.check_structure()
        return net
    try:
        return net.validate()
    except QsnnError as e:
        raise QsnnError(f"cannot deploy this model: {e}") from None


def load_model(path):
    """(model in eval mode, checkpoint dict) from a checkpoint file; QsnnError on any bad input.

    The config is checked (types, ranges, sizes within one chip) and its declared sizes against the
    tensors' actual shapes before the model is allocated; see ``io.load_checkpoint`` for the file."""
    ckpt = load_checkpoint(path)
    with about(path):
        return build_model(ckpt["config"], ckpt["state_dict"]).eval(), ckpt


def checkpoint_to_ir(path) -> Network:
    """The validated IR of the checkpoint file ``path``; its meta records the file's SHA-256 and the training
    dataset. QsnnError (prefixed with the path) for a bad checkpoint or one Loihi 2 cannot hold."""
    model, ckpt = load_model(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    meta = {"source_checkpoint_sha256": digest, "dataset": ckpt.get("meta", {}).get("dataset", "")}
    with about(path):
        return model_to_ir(model, meta)
