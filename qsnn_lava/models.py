"""Quantized spiking networks whose eval forward is the deployed integer network, exactly.

Training mode runs the same integer dynamics (qsnn_lava.dynamics) on float64 tensors with straight-
through rounding and surrogate spikes; eval mode runs them on int64 tensors. Both call the same
functions with the same integer weights, so the accuracy of the eval model *is* the deployed accuracy.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import dynamics as dyn
from . import ir
from .errors import QsnnError
from .neurons import LIF, MFP, QMem
from .quantizers import (QUANT_NAMES, SIGMOID_QUANTS, SigmoidSum, quantize, ste_round, threshold_mantissa,
                         utilisation)

DEFAULT_CONFIG = {
    "arch": "mlp",
    "sizes": [64, 256, 10],  # mlp: every width; conv archs: [n_in, classes]
    "input_shape": None,  # conv archs: (C, H, W) of one input sample
    "channels": [16, 32],  # conv archs: the two stages' widths
    "bn": False,  # conv archs: BatchNorm, folded into the integer weights and biases (see QuantConv)
    "quant": "uniform",
    "bits": 4,
    "neuron": "lif",
    "theta": 2.0,  # firing threshold in real weight units (vth = theta / unit)
    "du": 4095,  # QP-SNN LIF: no synaptic current memory
    "dv": 2048,  # tau = 0.5
    "timesteps": 8,
    "first_bits": None,  # weight bits of the first / last layer (None: bits); the papers keep them at full
    "last_bits": None,  # precision, Loihi holds at most 8 (7 for the uniform quantizer's odd mixed levels)
    "widths": None,  # conv archs, optional: {conv layer name: output channels}, e.g. a pruned net (docs/pruning.md)
    "mem_bits": 4,  # qmem neuron: bits of the stored membrane
    "bias_exp_min": 0,  # conv archs with bn: smallest bias_exp of the folded bias (6: netx-exportable)
}

ARCHS = ("mlp", "vgg", "resnet")
NEURON_DEFAULTS = {"lif": {"du": 4095, "dv": 2048}, "mfp": {"du": 2047, "dv": 4095}, "qmem": {"du": 4095, "dv": 2048}}
# conv nets train with BatchNorm (folded on deployment) and a threshold of one normalised unit
ARCH_DEFAULTS = {"vgg": {"bn": True, "theta": 1.0}, "resnet": {"bn": True, "theta": 1.0}}


# keys added after the first checkpoints were written; older configs get these defaults
LATER_KEYS = ("input_shape", "channels", "bn", "mem_bits", "widths", "first_bits", "last_bits", "bias_exp_min")


def with_defaults(cfg: dict) -> dict:
    """``cfg`` with any later-added key filled in from DEFAULT_CONFIG (older checkpoints still load)."""
    return {**{k: DEFAULT_CONFIG[k] for k in LATER_KEYS}, **cfg}


def make_config(**overrides) -> dict:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(ARCH_DEFAULTS.get(overrides.get("arch") or "mlp", {}))
    cfg.update(NEURON_DEFAULTS.get(overrides.get("neuron") or "lif", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    cfg = with_defaults(cfg)
    missing = [k for k in DEFAULT_CONFIG if k not in cfg]
    if missing:
        raise QsnnError(f"model config lacks {', '.join(missing)}")
    if cfg["arch"] not in ARCHS:
        raise QsnnError(f"architecture '{cfg['arch']}' is not supported (known: {', '.join(ARCHS)})")
    if cfg["quant"] not in QUANT_NAMES:
        raise QsnnError(f"quantizer '{cfg['quant']}' is not supported (known: {', '.join(QUANT_NAMES)})")
    if cfg["neuron"] not in NEURON_DEFAULTS:
        raise QsnnError(f"neuron '{cfg['neuron']}' is not supported (known: {', '.join(NEURON_DEFAULTS)})")
    for key in ("bits", "first_bits", "last_bits"):
        if cfg[key] is not None and not 1 <= int(cfg[key]) <= 8:
            raise QsnnError(f"{key} = {cfg[key]} is out of range; Loihi weights hold 1 to 8 bits")
    if cfg["quant"] == "ternary" and int(cfg["bits"]) != 2:
        raise QsnnError("ternary weights take 2 bits on the target: pass --bits 2")
    sizes = cfg["sizes"]
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise QsnnError(f"sizes = {sizes} must list at least an input and an output width, all >= 1")
    if cfg["arch"] != "mlp":
        shape = cfg["input_shape"]
        if shape is None or len(shape) != 3 or int(np.prod(shape)) != int(sizes[0]):
            raise QsnnError(f"arch '{cfg['arch']}' needs input_shape (C, H, W) with C*H*W = {sizes[0]}, "
                            f"got {shape}; the dataset gives it (a flat dataset cannot feed a conv net)")
        if len(cfg["channels"]) != 2 or any(int(c) < 1 for c in cfg["channels"]):
            raise QsnnError(f"channels = {cfg['channels']} must be two widths >= 1")
        if min(shape[1:]) < 4:
            raise QsnnError(f"input {tuple(shape)} is too small for two stride-2 stages (needs H, W >= 4)")
    elif cfg["bn"]:
        raise QsnnError("bn applies to the conv architectures (vgg, resnet) only")
    if not (0 <= int(cfg["du"]) <= 4095 and 0 <= int(cfg["dv"]) <= 4095):
        raise QsnnError("du and dv are 12-bit decays in [0, 4095]")
    if int(cfg["timesteps"]) < 1:
        raise QsnnError("timesteps must be >= 1")
    if cfg["widths"] is not None:
        check_widths(cfg)
    if not 0 <= int(cfg["bias_exp_min"]) <= 7:
        raise QsnnError(f"bias_exp_min = {cfg['bias_exp_min']} is out of range; bias_exp is 3-bit (0..7)")
    if cfg["neuron"] == "qmem" and not 2 <= int(cfg["mem_bits"]) <= 8:
        raise QsnnError(f"mem_bits = {cfg['mem_bits']} is out of range; the qmem membrane holds 2 to 8 bits")


# the conv layers whose output channels ``widths`` may set; resnet: a block's second conv (resNb) is tied
# to the block's source (stem, down) by the identity skip, so the two must have equal widths
CONV_LAYERS = {"vgg": ("conv1", "conv2"), "resnet": ("stem", "res1a", "res1b", "down", "res2a", "res2b")}
TIED = {"resnet": (("stem", "res1b"), ("down", "res2b"))}


def check_widths(cfg: dict) -> None:
    widths, arch = cfg["widths"], cfg["arch"]
    if arch == "mlp":
        raise QsnnError("widths applies to the conv architectures; an mlp's widths are its sizes")
    if not isinstance(widths, dict):
        raise QsnnError(f"widths must be a dict {{layer name: channels}}, got {type(widths).__name__}")
    unknown = [k for k in widths if k not in CONV_LAYERS[arch]]
    if unknown:
        raise QsnnError(f"widths names unknown layer(s) {', '.join(map(str, unknown))} "
                        f"(arch {arch} has {', '.join(CONV_LAYERS[arch])})")
    if any(int(v) < 1 for v in widths.values()):
        raise QsnnError(f"widths = {widths}: every width must be >= 1")
    base = {name: int(cfg["channels"][0 if i < 3 else 1] if arch == "resnet" else cfg["channels"][i])
            for i, name in enumerate(CONV_LAYERS[arch])}
    for a, b in TIED.get(arch, ()):
        if int(widths.get(a, base[a])) != int(widths.get(b, base[b])):
            raise QsnnError(f"widths: {a} and {b} are tied by the residual identity skip and must be equal")


class QuantSynapse(nn.Module):
    """Latent float weights of any shape and their integer mantissas ``m`` (deployed as Lava weights)."""

    def __init__(self, shape: tuple, fan_in: int, quant: str, bits: int):
        super().__init__()
        self.quant, self.bits = quant, int(bits)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.uniform_(self.weight, -2.0 / fan_in ** 0.5, 2.0 / fan_in ** 0.5)
        if quant in SIGMOID_QUANTS:
            self.quantizer = SigmoidSum(self.bits, self.weight, ternary=quant == "ternary")
            self.unit = 1.0 / self.quantizer.max_level
        else:
            self.unit = quantize(quant, self.weight.detach(), self.bits)[1]

    def quantized(self, w: torch.Tensor) -> torch.Tensor:
        """Mantissas of latent weights ``w``: integers in eval mode; while training, straight-through
        (uniform, rescaw) or the soft sigmoid staircase (sigmoid, ternary)."""
        if self.quant in SIGMOID_QUANTS:
            return self.quantizer(w, hard=not self.training)
        return quantize(self.quant, w, self.bits)[0]

    def mantissa(self) -> torch.Tensor:
        return self.quantized(self.weight)

    def integer_weight(self) -> torch.Tensor:
        return self.mantissa().detach().round().to(torch.int64)

    def train_weight(self, dtype) -> torch.Tensor:
        return self.mantissa().to(dtype)


class QuantDense(QuantSynapse):
    """Dense synapses; input spikes [T, N, ...] are flattened (a Dense after a conv sees its map flat)."""

    def __init__(self, n_in: int, n_out: int, quant: str, bits: int):
        super().__init__((n_out, n_in), n_in, quant, bits)
        self.out_shape = (n_out,)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        w = self.train_weight(s.dtype) if self.training else self.integer_weight()
        return dyn.dense_accumulate(s.flatten(2), w, weight_exp=0)

    def to_ir(self):
        return ir.Dense(self.integer_weight().numpy())


class QuantConv(QuantSynapse):
    """Conv synapses (torch cross-correlation) on spike maps [T, N, C, H, W], optionally with BatchNorm
    folded in exactly.

    With ``bn``, the BatchNorm scale gamma / sqrt(var + eps) multiplies each output channel's latent
    weights *before* quantization, and its shift beta - gamma * mean / sqrt(var + eps) becomes the LIF
    bias: in the neuron's internal units it is shift / unit * 64, rounded (straight through) to a
    13-bit mantissa with one per-layer exponent, ``bias_mant << bias_exp``. While training, mean and
    var are the batch statistics of the latent-weight convolution (no gradient through them) and update
    the running statistics; in eval the running statistics give fixed integer weights and biases, which
    is what is deployed. No BatchNorm runs on the target.
    """

    def __init__(self, in_shape: tuple, c_out: int, kernel: int, quant: str, bits: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn: bool = False, bias_exp_min: int = 0):
        c_in = int(in_shape[0])
        super().__init__((c_out, c_in // groups, kernel, kernel), c_in // groups * kernel * kernel, quant, bits)
        self.in_shape, self.stride, self.padding, self.groups = tuple(in_shape), stride, padding, groups
        probe = ir.Conv(np.zeros((c_out, c_in // groups, kernel, kernel), np.int64), in_shape, stride, padding, groups)
        self.out_shape = probe.out_shape
        self.bn = nn.BatchNorm2d(c_out) if bn else None
        self.bias_exp_min = int(bias_exp_min)

    def _conv(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = s.reshape(*s.shape[:2], *self.in_shape)
        return dyn.conv_accumulate(s, w, (self.stride,) * 2, (self.padding,) * 2, self.groups)

    def _scale_shift(self, s: torch.Tensor | None):
        """Per-channel BatchNorm scale and shift: from this batch (training) or the running statistics."""
        bn = self.bn
        if self.training and s is not None:
            with torch.no_grad():
                a = self._conv(s, self.weight.to(s.dtype)).flatten(0, 1)
                mean, var = a.mean((0, 2, 3)), a.var((0, 2, 3), unbiased=False)
                n = a.numel() / a.shape[1]
                bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean.float())
                bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var.float() * n / max(n - 1, 1))
                bn.num_batches_tracked += 1
        else:
            mean, var = bn.running_mean, bn.running_var
        inv = bn.weight / torch.sqrt(var.to(bn.weight.dtype) + bn.eps)
        return inv, bn.bias - mean.to(inv.dtype) * inv

    def folded(self, s: torch.Tensor | None = None):
        """(mantissas, (bias mantissa per channel, bias_exp)) from ONE BatchNorm scale and shift: this
        batch's statistics when training with input ``s``, else the running ones. Without bn: (mantissas,
        (None, 0)). The bias is shift / unit * 64 internal units as ``mant << exp``, 13-bit ``mant``."""
        if self.bn is None:
            return self.quantized(self.weight), (None, 0)
        inv, shift = self._scale_shift(s)
        b = shift * (64.0 / self.unit)
        big = float(b.detach().abs().max())
        exp = min(7, max(self.bias_exp_min, math.ceil(math.log2(big / 4095)) if big > 4095 else 0))
        return self.quantized(self.weight * inv[:, None, None, None]), (ste_round(b / (1 << exp)).clamp(-4096, 4095), exp)

    def mantissa(self) -> torch.Tensor:
        return self.folded()[0]

    def integer_bias(self) -> tuple[np.ndarray, int]:
        """Per-neuron bias mantissas (each channel's repeated over its map) and the exponent, for the IR."""
        mant, exp = self.folded()[1]
        if mant is None:
            return np.zeros(int(np.prod(self.out_shape)), np.int64), 0
        per_channel = mant.detach().round().to(torch.int64).numpy()
        return np.repeat(per_channel, int(np.prod(self.out_shape[1:]))), exp

    def forward(self, s: torch.Tensor):
        """-> (synaptic input [T, N, C_out, H_out, W_out], bias per channel or None)."""
        w, (mant, exp) = self.folded(s)
        if self.training:
            w, bias = w.to(s.dtype), None if mant is None else (mant * (1 << exp)).to(s.dtype)
        else:
            w = w.detach().round().to(torch.int64)
            bias = None if mant is None else mant.detach().round().to(torch.int64) << exp
        return self._conv(s, w), (None if bias is None else bias[:, None, None])

    def to_ir(self):
        return ir.Conv(self.integer_weight().numpy(), self.in_shape, self.stride, self.padding, self.groups)


class SumPool(nn.Module):
    """k x k sum pooling (stride k) of spike maps: a depthwise conv with all weights 1 (``ir.sum_pool``)."""

    bits = 1

    def __init__(self, in_shape: tuple, k: int):
        super().__init__()
        self.in_shape, self.k = tuple(in_shape), int(k)
        self.out_shape = ir.sum_pool(self.in_shape, self.k).out_shape

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        w = torch.ones(self.in_shape[0], 1, self.k, self.k, dtype=s.dtype)
        s = s.reshape(*s.shape[:2], *self.in_shape)
        return dyn.conv_accumulate(s, w, (self.k,) * 2, (0, 0), self.in_shape[0])

    def to_ir(self):
        return ir.sum_pool(self.in_shape, self.k)


class IdentitySkip(nn.Module):
    """The residual shortcut: the source's spikes times a fixed integer ``gain`` (the mantissa of a real
    weight of 1.0, i.e. round(1 / unit)); a depthwise 1x1 Conv on the target."""

    def __init__(self, shape: tuple, gain: int):
        super().__init__()
        self.shape, self.gain = tuple(shape), int(gain)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s.reshape(*s.shape[:2], *self.shape) * self.gain

    def to_ir(self):
        c = self.shape[0]
        return ir.Conv(np.full((c, 1, 1, 1), self.gain), self.shape, groups=c)


class SpikingLayer(nn.Module):
    """One deployable layer: a synapse population (plus optional skips from earlier layers) into neurons."""

    def __init__(self, name: str, synapse: nn.Module, neuron: nn.Module, skips: tuple = ()):
        super().__init__()
        self.name, self.synapse, self.neuron = name, synapse, neuron
        self.skip_sources = [src for src, _ in skips]
        self.skips = nn.ModuleList(m for _, m in skips)

    @property
    def out_shape(self) -> tuple:
        return self.synapse.out_shape

    def synaptic_input(self, s: torch.Tensor, outputs: dict):
        """(summed input of the main synapse and the skips, the folded-BN bias or None)."""
        a = self.synapse(s)
        a, bias = a if isinstance(a, tuple) else (a, None)
        for src, m in zip(self.skip_sources, self.skips):
            a = a + m(outputs[src]).to(a.dtype)
        return a, bias

    def forward(self, s: torch.Tensor, outputs: dict) -> torch.Tensor:
        return self.neuron(*self.synaptic_input(s, outputs))


def _neuron(cfg: dict, n: int, unit: float, name: str):
    vth = threshold_mantissa(float(cfg["theta"]), unit, name)
    if cfg["neuron"] == "qmem":
        return QMem(n, vth=vth, du=cfg["du"], dv=cfg["dv"], mem_bits=int(cfg["mem_bits"]))
    return (MFP if cfg["neuron"] == "mfp" else LIF)(n, vth=vth, du=cfg["du"], dv=cfg["dv"])


def _pool_neuron(n: int):
    """Spike max pooling: fires when any input of its window did (vth 0, no memory, exact)."""
    return LIF(n, vth=0, du=4095, dv=4095)


def build_layers(cfg: dict) -> list[SpikingLayer]:
    """The named architecture's layers (see docs/architectures.md)."""
    q, b, arch = cfg["quant"], int(cfg["bits"]), cfg["arch"]
    b_first, b_last = int(cfg["first_bits"] or b), int(cfg["last_bits"] or b)
    sizes = [int(n) for n in cfg["sizes"]]
    if arch == "mlp":
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bits = b_last if i == len(sizes) - 2 else b_first if i == 0 else b
            syn = QuantDense(n_in, n_out, q, bits)
            layers.append(SpikingLayer(f"fc{i + 1}", syn, _neuron(cfg, n_out, syn.unit, f"fc{i + 1}")))
        return layers
    c1, c2 = (int(c) for c in cfg["channels"])
    layers, shape = [], tuple(int(d) for d in cfg["input_shape"])
    widths = cfg["widths"] or {}

    def add(name, syn, neuron=None, skips=()):
        nonlocal shape
        n = int(np.prod(syn.out_shape))
        layers.append(SpikingLayer(name, syn, neuron or _neuron(cfg, n, syn.unit, name), skips))
        shape = syn.out_shape

    def conv(name, c_out, stride=1, skips=()):
        c_out = int(widths.get(name, c_out))
        bits = b_first if not layers else b
        add(name, QuantConv(shape, c_out, 3, q, bits, stride=stride, padding=1, bn=cfg["bn"],
                                  bias_exp_min=int(cfg["bias_exp_min"])), skips=skips)

    if arch == "vgg":  # conv - pool - conv - pool - fc
        conv("conv1", c1)
        add("pool1", SumPool(shape, 2), _pool_neuron(shape[0] * (shape[1] // 2) * (shape[2] // 2)))
        conv("conv2", c2)
        add("pool2", SumPool(shape, 2), _pool_neuron(shape[0] * (shape[1] // 2) * (shape[2] // 2)))
    else:  # resnet: stem (stride 2) - residual block - conv (stride 2) - residual block - fc
        for stage, (c, name) in enumerate(((c1, "stem"), (c2, "down"))):
            conv(name, c, stride=2)
            src_shape = shape
            conv(f"res{stage + 1}a", c)
            gain = round(1.0 / layers[-1].synapse.unit)
            conv(f"res{stage + 1}b", c, skips=[(name, IdentitySkip(src_shape, gain))])
    fc = QuantDense(int(np.prod(shape)), sizes[-1], q, b_last)
    add("fc", fc)
    return layers


class QSNN(nn.Module):
    """Feed-forward QSNN; input spikes [T, N, n_in] -> list of every layer's spikes, flat [T, N, n]."""

    def __init__(self, cfg: dict):
        super().__init__()
        check_config(cfg)
        cfg = self.config = with_defaults(cfg)
        self.layers = nn.ModuleList(build_layers(cfg))
        # mlp trains on float64 as before; conv nets on float32, exact for the integers they hold
        # (|v| < 2^24 and dyadic decays) and twice as fast
        self.train_dtype = torch.float64 if cfg["arch"] == "mlp" else torch.float32

    def set_epoch(self, epoch: int) -> None:
        """Advance per-epoch schedules (the sigmoid quantizer's temperature)."""
        for m in self.modules():
            if isinstance(m, SigmoidSum):
                m.set_epoch(epoch)

    def quantized_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer.synapse, QuantSynapse)]

    def utilisation(self) -> dict:
        """QP-SNN Eq. 8 per layer: the fraction of the 2^b weight levels in use."""
        return {layer.name: utilisation(layer.synapse.integer_weight(), layer.synapse.bits)
                for layer in self.quantized_layers()}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = x.to(self.train_dtype) if self.training else x.to(torch.int64)
        outputs, out = {ir.INPUT: s}, []
        for layer in self.layers:
            s = layer(s, outputs)
            outputs[layer.name] = s
            out.append(s.flatten(2))
        return out


def build_model(cfg: dict, state_dict: dict | None = None) -> QSNN:
    model = QSNN(cfg)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise QsnnError(f"checkpoint weights do not match its config ({' '.join(first[:2])[:200]})") from None
    return model


def predict(output_spikes: torch.Tensor) -> torch.Tensor:
    """Class = most output spikes over time; ties go to the lowest index (torch/numpy argmax rule)."""
    return output_spikes.sum(0).argmax(-1)
