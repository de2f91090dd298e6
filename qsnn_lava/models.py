"""Quantized spiking networks whose eval forward is the deployed integer network, exactly.

Training mode runs the same integer dynamics (qsnn_lava.dynamics) on float tensors holding integers
(per layer float32 where ``QSNN.train_dtypes`` proves it exact, else float64) with straight-through rounding
and surrogate spikes; eval mode runs them on int64 tensors. Both call the same
functions with the same integer weights, so the accuracy of the eval model *is* the deployed accuracy.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from . import dynamics as dyn
from . import ir
from .errors import QsnnError
from .neurons import LIF, MFP, QMem, Readout
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
    "input": "rate",  # "rate": 0/1 spikes of the rate code; "direct": graded intensities every step (data.py)
    "input_bits": 8,  # direct input: bits of each intensity (2..8), the graded spikes' num_message_bits
    "learn_threshold": False,  # learn a per-layer threshold scale (neurons.LIF), deployed as an integer vth
    "readout": False,  # the output layer a non-spiking readout (neurons.Readout, ir.Readout): class = max voltage sum
}
INPUTS = ("rate", "direct")

ARCHS = ("mlp", "vgg", "resnet")
NEURON_DEFAULTS = {"lif": {"du": 4095, "dv": 2048}, "mfp": {"du": 2047, "dv": 4095}, "qmem": {"du": 4095, "dv": 2048}}
# conv nets train with BatchNorm (folded on deployment) and a threshold of one normalised unit
ARCH_DEFAULTS = {"vgg": {"bn": True, "theta": 1.0}, "resnet": {"bn": True, "theta": 1.0}}


# keys added after the first checkpoints were written; older configs get these defaults
LATER_KEYS = ("input_shape", "channels", "bn", "mem_bits", "widths", "first_bits", "last_bits", "bias_exp_min",
              "input", "input_bits", "learn_threshold", "readout")


def input_bits(cfg: dict) -> int:
    """The message bits of the network input ``cfg`` describes: 1 for the rate code's 0/1 spikes, else its
    ``input_bits`` (direct, graded input). What ``ir.Network.input_bits`` records."""
    cfg = with_defaults(cfg)
    return 1 if cfg["input"] == "rate" else int(cfg["input_bits"])


def input_scale(cfg: dict) -> int:
    """The largest input value of ``cfg``'s input code, ``2^input_bits - 1`` (1 for 0/1 spikes). The first layer
    reads its integer input as ``q / input_scale``, a real value in [0, 1]: its threshold and folded bias are
    multiplied by it, its BatchNorm statistics are taken on ``q / input_scale`` (docs/training.md)."""
    return (1 << input_bits(cfg)) - 1


def with_defaults(cfg: dict) -> dict:
    """``cfg`` with any later-added key filled in from DEFAULT_CONFIG (older checkpoints still load)."""
    return {**{k: DEFAULT_CONFIG[k] for k in LATER_KEYS}, **cfg}


def make_config(**overrides) -> dict:
    """A checked model config: ``DEFAULT_CONFIG``, then the defaults of the chosen ``arch`` and ``neuron``
    (``ARCH_DEFAULTS``, ``NEURON_DEFAULTS``), then every override that is not None. QsnnError from
    ``check_config`` when the result cannot make a network."""
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(ARCH_DEFAULTS.get(overrides.get("arch") or "mlp", {}))
    cfg.update(NEURON_DEFAULTS.get(overrides.get("neuron") or "lif", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Refuse (QsnnError naming the key and the fix) a config that cannot make a network: wrong types,
    missing keys, values out of range, and sizes beyond one Loihi 2 chip (``ir.MAX_NEURONS`` neurons per
    layer, ``ir.MAX_ELEMENTS`` weights per array, ``ir.MAX_TIMESTEPS``), all before anything is allocated.
    Configs from a checkpoint are untrusted: a string where a number belongs or a NaN is refused here."""
    if not isinstance(cfg, dict):
        raise QsnnError(f"the model config must be a dict, not {type(cfg).__name__}")
    cfg = with_defaults(cfg)
    missing = [k for k in DEFAULT_CONFIG if k not in cfg]
    if missing:
        raise QsnnError(f"model config lacks {', '.join(missing)}")
    for key, known, what in (("arch", ARCHS, "architecture"), ("quant", QUANT_NAMES, "quantizer"),
                             ("neuron", tuple(NEURON_DEFAULTS), "neuron")):
        if not isinstance(cfg[key], str) or cfg[key] not in known:
            raise QsnnError(f"{what} {_shown(cfg[key])} is not supported (known: {', '.join(known)})")
    for key in ("bits", "first_bits", "last_bits"):
        if cfg[key] is not None or key == "bits":
            _whole(cfg[key], key, 1, 8, "Loihi weights hold 1 to 8 bits")
    if cfg["quant"] == "ternary" and int(cfg["bits"]) != 2:
        raise QsnnError("ternary weights take 2 bits on the target: pass --bits 2")
    sizes = _widths_list(cfg["sizes"], "sizes", None)
    if len(sizes) < 2:
        raise QsnnError(f"sizes = {_shown(cfg['sizes'])} must list at least an input and an output width, all >= 1")
    for a, b in zip(sizes[:-1], sizes[1:]):
        if cfg["arch"] == "mlp":
            _fits("sizes", f"a {b} x {a} weight matrix", a * b, ir.MAX_ELEMENTS)
    shape = cfg["input_shape"]
    if cfg["arch"] != "mlp" or shape is not None:
        shape = None if shape is None else _widths_list(shape, "input_shape", 3)
        if shape is None or int(np.prod(shape)) != sizes[0]:
            raise QsnnError(f"arch '{cfg['arch']}' needs input_shape (C, H, W) with C*H*W = {sizes[0]}, "
                            f"got {_shown(cfg['input_shape'])}; the dataset gives it (a flat dataset cannot feed "
                            "a conv net)")
    if cfg["arch"] != "mlp":
        channels = _widths_list(cfg["channels"], "channels", 2)
        if min(shape[1:]) < 4:
            raise QsnnError(f"input {tuple(shape)} is too small for two stride-2 stages (needs H, W >= 4)")
        if cfg["widths"] is not None:
            check_widths(cfg)
        _check_conv_sizes(shape, [*channels, *(cfg["widths"] or {}).values()], sizes[-1])
    elif cfg["widths"] is not None:
        check_widths(cfg)
    if not isinstance(cfg["bn"], (bool, np.bool_)):
        raise QsnnError(f"bn = {_shown(cfg['bn'])} must be true or false")
    if cfg["bn"] and cfg["arch"] == "mlp":
        raise QsnnError("bn applies to the conv architectures (vgg, resnet) only")
    for key in ("du", "dv"):
        _whole(cfg[key], key, 0, 4095, "du and dv are 12-bit decays in [0, 4095]")
    _whole(cfg["timesteps"], "timesteps", 1, ir.MAX_TIMESTEPS, "give the number of time steps per sample")
    theta = cfg["theta"]
    if isinstance(theta, (bool, np.bool_)) or not isinstance(theta, (int, float, np.integer, np.floating)) \
            or not 0 < float(theta) <= ir.VTH_MAX:
        raise QsnnError(f"theta = {_shown(theta)} must be a number in (0, {ir.VTH_MAX}] (the firing threshold "
                        "in weight units)")
    _whole(cfg["bias_exp_min"], "bias_exp_min", 0, 7, "bias_exp is 3-bit (0..7)")
    if not isinstance(cfg["input"], str) or cfg["input"] not in INPUTS:
        raise QsnnError(f"input {_shown(cfg['input'])} is not supported (known: {', '.join(INPUTS)})")
    if cfg["input"] == "direct":
        _whole(cfg["input_bits"], "input_bits", 2, 8, "direct input carries 2 to 8 bits per value (1 bit: use "
               "the rate input)")
    if not isinstance(cfg["learn_threshold"], (bool, np.bool_)):
        raise QsnnError(f"learn_threshold = {_shown(cfg['learn_threshold'])} must be true or false")
    if cfg["learn_threshold"] and cfg["neuron"] == "qmem":
        raise QsnnError("learn_threshold does not apply to the qmem neuron (its stored membrane's position is set "
                        "by vth); use --neuron lif or mfp, or a fixed theta")
    if cfg["neuron"] == "qmem":
        _whole(cfg["mem_bits"], "mem_bits", 2, 8, "the qmem membrane holds 2 to 8 bits")
    if not isinstance(cfg["readout"], (bool, np.bool_)):
        raise QsnnError(f"readout = {_shown(cfg['readout'])} must be true or false")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value, key: str, lo: int, hi: int, fix: str) -> int:
    try:
        return ir.whole_number(value, key, lo, hi)
    except QsnnError as e:
        raise QsnnError(f"{e}; {fix}") from None


def _widths_list(value, key: str, length: int | None) -> list:
    """A list of positive whole numbers (each at most ``ir.MAX_NEURONS``), of ``length`` if given."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        raise QsnnError(f"{key} = {_shown(value)} must be a list of {length or 'several'} whole numbers >= 1")
    return [_whole(v, f"{key}[{i}]", 1, ir.MAX_NEURONS, f"a layer holds at most {ir.MAX_NEURONS} neurons "
                   "(one Loihi 2 chip)") for i, v in enumerate(value)]


def _fits(key: str, what: str, n: int, limit: int) -> None:
    if n > limit:
        raise QsnnError(f"{key}: {what} has {n} elements; at most {limit} fit (one Loihi 2 chip)")


def _check_conv_sizes(shape, widths, classes: int) -> None:
    """Bounds for the conv archs: no conv layer's map is larger than (C_out, H, W) of the input's H x W,
    no kernel larger than C_out x C_in x 3 x 3 and the classifier than classes x C x H x W."""
    c_in, h, w = shape
    for c in widths:
        _whole(c, "channels/widths", 1, ir.MAX_NEURONS, "give a positive number of channels")
        _fits("channels/widths", f"a layer of {c} x {h} x {w} neurons", int(c) * h * w, ir.MAX_NEURONS)
    c = max(int(v) for v in widths)
    _fits("channels/widths", f"a {c} x {max(c, c_in)} x 3 x 3 kernel", c * max(c, c_in) * 9, ir.MAX_ELEMENTS)
    _fits("sizes", f"the {classes}-class classifier on {c} x {h} x {w} inputs", classes * c * h * w, ir.MAX_ELEMENTS)


# the conv layers whose output channels ``widths`` may set; resnet: a block's second conv (resNb) is tied
# to the block's source (stem, down) by the identity skip, so the two must have equal widths
CONV_LAYERS = {"vgg": ("conv1", "conv2"), "resnet": ("stem", "res1a", "res1b", "down", "res2a", "res2b")}
TIED = {"resnet": (("stem", "res1b"), ("down", "res2b"))}


def check_widths(cfg: dict) -> None:
    """Refuse (QsnnError) a ``cfg["widths"]`` that is not a dict of the arch's conv layer names
    (``CONV_LAYERS``) to positive channel counts, or that gives a resnet block's tied layers (``TIED``)
    different widths; an mlp takes no widths."""
    widths, arch = cfg["widths"], cfg["arch"]
    if arch == "mlp":
        raise QsnnError("widths applies to the conv architectures; an mlp's widths are its sizes")
    if not isinstance(widths, dict):
        raise QsnnError(f"widths must be a dict {{layer name: channels}}, got {type(widths).__name__}")
    unknown = [k for k in widths if not isinstance(k, str) or k not in CONV_LAYERS[arch]]
    if unknown:
        raise QsnnError(f"widths names unknown layer(s) {', '.join(map(str, unknown))} "
                        f"(arch {arch} has {', '.join(CONV_LAYERS[arch])})")
    for k, v in widths.items():
        _whole(v, f"widths['{k}']", 1, ir.MAX_NEURONS, "every width is a positive number of channels")
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
        """The mantissas of this layer's latent weights (float, holding integers in eval mode; straight-through
        or the soft staircase while training)."""
        return self.quantized(self.weight)

    def integer_weight(self) -> torch.Tensor:
        """The mantissas rounded and detached, as int64 (in eval mode: the deployed weights); QsnnError when they
        are not finite or exceed 2^31 in magnitude (a corrupt quantizer state)."""
        m = self.mantissa().detach().round()
        if not bool(torch.isfinite(m).all()) or float(m.abs().max()) > 1 << 31:
            raise QsnnError("the weight mantissas are not finite integers of at most 32 bits (the quantizer's state "
                            "is out of range); the checkpoint is corrupt, re-train")
        return m.to(torch.int64)

    def train_weight(self, dtype) -> torch.Tensor:
        """The mantissas in ``dtype`` with their gradients, for the training forward."""
        return self.mantissa().to(dtype)


class QuantDense(QuantSynapse):
    """Dense synapses; input spikes [T, N, ...] are flattened (a Dense after a conv sees its map flat)."""

    def __init__(self, n_in: int, n_out: int, quant: str, bits: int):
        super().__init__((n_out, n_in), n_in, quant, bits)
        self.out_shape = (n_out,)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Input spikes ``s`` [T, N, ...] (flattened to [T, N, n_in]) -> synaptic input [T, N, n_out] in weight
        units (weight_exp 0): float mantissas while training, exact int64 arithmetic in eval mode."""
        w = self.train_weight(s.dtype) if self.training else self.integer_weight()
        return dyn.dense_accumulate(s.flatten(2), w, weight_exp=0)

    def to_ir(self):
        """The IR synapse: ``ir.Dense`` of the integer weights [n_out, n_in], weight_exp 0."""
        return ir.Dense(self.integer_weight().cpu().numpy())


def batch_moments(a: torch.Tensor, sum_across=None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and biased variance of ``a`` [B, C, H, W] over (B, H, W), and the count they are over.

    ``sum_across`` (training in several processes, ``distributed.Context``): a function summing a tensor over
    all processes; then the moments are those of the global batch (every process's part), computed by the
    same two-pass rule as in one process (mean first, then the mean squared deviation from it), so they differ
    from one process's only in the order of the float sums. Every process gets the same values, so the
    running statistics stay identical everywhere (what SyncBatchNorm does for an ordinary BatchNorm)."""
    if sum_across is None:
        return a.mean((0, 2, 3)), a.var((0, 2, 3), unbiased=False), a.numel() / a.shape[1]
    n = float(sum_across(torch.tensor([a.numel() / a.shape[1]], dtype=torch.float64, device=a.device)))
    mean = sum_across(a.sum((0, 2, 3))) / n
    var = sum_across((a - mean[:, None, None]).square().sum((0, 2, 3))) / n
    return mean, var, n


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
                 padding: int = 0, groups: int = 1, bn: bool = False, bias_exp_min: int = 0, input_scale: int = 1):
        c_in = int(in_shape[0])
        super().__init__((c_out, c_in // groups, kernel, kernel), c_in // groups * kernel * kernel, quant, bits)
        self.in_shape, self.stride, self.padding, self.groups = tuple(in_shape), stride, padding, groups
        probe = ir.Conv(np.zeros((groups, c_in // groups, kernel, kernel), np.int64), in_shape, stride, padding, groups)
        self.out_shape = (c_out, *probe.out_shape[1:])  # the probe has one output channel per group
        self.bn = nn.BatchNorm2d(c_out) if bn else None
        self.bias_exp_min = int(bias_exp_min)
        self.sum_across = None  # training in several processes: sums a tensor over all of them (distributed.py)
        self.input_scale = int(input_scale)  # the first layer of a direct-input net: q / input_scale is in [0, 1]

    def _conv(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = s.reshape(*s.shape[:2], *self.in_shape)
        return dyn.conv_accumulate(s, w, (self.stride,) * 2, (self.padding,) * 2, self.groups)

    def _scale_shift(self, s: torch.Tensor | None):
        """Per-channel BatchNorm scale and shift: from this batch (training) or the running statistics."""
        bn = self.bn
        if self.training and s is not None:
            with torch.no_grad():
                a = self._conv(s / self.input_scale, self.weight.to(s.dtype)).flatten(0, 1)
                mean, var, n = batch_moments(a, self.sum_across)
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
        b = shift * (64.0 * self.input_scale / self.unit)
        big = float(b.detach().abs().max())
        if not (math.isfinite(big) and bool(torch.isfinite(inv).all())):
            raise QsnnError("its BatchNorm state (weight, bias, running_mean, running_var) folds to a non-finite "
                            "scale or bias; the checkpoint is corrupt, re-train")
        exp = min(7, max(self.bias_exp_min, math.ceil(math.log2(big / 4095)) if big > 4095 else 0))
        return self.quantized(self.weight * inv[:, None, None, None]), (ste_round(b / (1 << exp)).clamp(-4096, 4095), exp)

    def mantissa(self) -> torch.Tensor:
        """The mantissas of the latent weights with the BatchNorm scale folded in from the running statistics
        (without bn: the plain mantissas)."""
        return self.folded()[0]

    def integer_bias(self) -> tuple[np.ndarray, int]:
        """Per-neuron bias mantissas (each channel's repeated over its map) and the exponent, for the IR."""
        mant, exp = self.folded()[1]
        if mant is None:
            return np.zeros(int(np.prod(self.out_shape)), np.int64), 0
        per_channel = mant.detach().round().to(torch.int64).cpu().numpy()
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
        """The IR synapse: ``ir.Conv`` of the integer (folded) weights [C_out, C_in / groups, k, k] with this
        layer's in_shape, stride, padding and groups, weight_exp 0. The folded bias is ``integer_bias()``."""
        return ir.Conv(self.integer_weight().cpu().numpy(), self.in_shape, self.stride, self.padding, self.groups)


class SumPool(nn.Module):
    """k x k sum pooling (stride k) of spike maps: a depthwise conv with all weights 1 (``ir.sum_pool``)."""

    bits = 1

    def __init__(self, in_shape: tuple, k: int):
        super().__init__()
        self.in_shape, self.k = tuple(in_shape), int(k)
        self.out_shape = ir.sum_pool(self.in_shape, self.k).out_shape

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Spikes ``s`` [T, N, ...] (read as [T, N, C, H, W]) -> the sums of each k x k block
        [T, N, C, H // k, W // k], in ``s``'s dtype: the depthwise conv of ones as a reshape and a sum over
        each block (the same integers; a rest of rows or columns beyond the last whole block is dropped, as
        the stride-k conv drops it), several times faster than the conv and its backward."""
        (c, h, w), k = self.in_shape, self.k
        s = s.reshape(*s.shape[:2], c, h, w)[..., :h // k * k, :w // k * k]
        blocks = s.reshape(*s.shape[:3], h // k, k, w // k, k)  # [T, N, C, H/k, k, W/k, k]
        rows = functools.reduce(torch.add, blocks.unbind(4))  # adds of whole slices: faster than sum((4, 6))
        return functools.reduce(torch.add, rows.unbind(-1))

    def to_ir(self):
        """The IR synapse: ``ir.sum_pool(in_shape, k)``, a depthwise Conv of ones."""
        return ir.sum_pool(self.in_shape, self.k)


class IdentitySkip(nn.Module):
    """The residual shortcut: the source's spikes times a fixed integer ``gain`` (the mantissa of a real
    weight of 1.0, i.e. round(1 / unit)); a depthwise 1x1 Conv on the target."""

    def __init__(self, shape: tuple, gain: int):
        super().__init__()
        self.shape, self.gain = tuple(shape), int(gain)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """The source's spikes ``s`` [T, N, ...] as [T, N, *shape], times ``gain``: synaptic input in weight
        units."""
        return s.reshape(*s.shape[:2], *self.shape) * self.gain

    def to_ir(self):
        """The IR synapse: a depthwise 1x1 ``ir.Conv`` on ``shape`` whose every weight is ``gain``."""
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
        """The neurons' shape: ``(n,)`` after a dense synapse, ``(C, H, W)`` after a conv or pool."""
        return self.synapse.out_shape

    def synaptic_input(self, s: torch.Tensor, outputs: dict, steady: bool = False):
        """(summed input of the main synapse and the skips, the folded-BN bias or None). ``steady``: ``s`` is
        the same at every step (direct input), so the main synapse runs on one step and its output is
        repeated over T: the same integers (and BatchNorm moments) for 1/T of the work."""
        a = self.synapse(s[:1] if steady else s)
        a, bias = a if isinstance(a, tuple) else (a, None)
        if steady:
            a = a.expand(s.shape[0], *a.shape[1:])
        for src, m in zip(self.skip_sources, self.skips):
            a = a + m(outputs[src]).to(a.dtype)
        return a, bias

    def forward(self, s: torch.Tensor, outputs: dict, steady: bool = False) -> torch.Tensor:
        """This layer's spikes [T, N, *out_shape] for the previous layer's spikes ``s`` [T, N, ...]; ``outputs``
        maps source names (earlier layers, ``ir.INPUT``) to their spikes, for the skips; ``steady`` as for
        ``synaptic_input``."""
        return self.neuron(*self.synaptic_input(s, outputs, steady))


def _neuron(cfg: dict, n: int, unit: float, name: str, scale: int = 1):
    """The neuron population of a layer: vth = theta / unit (times ``scale``, the input scale of a direct-input
    network's first layer), du, dv and the neuron kind of ``cfg``."""
    vth = threshold_mantissa(float(cfg["theta"]), unit, name) * int(scale)
    if cfg["neuron"] == "qmem":
        return QMem(n, vth=vth, du=cfg["du"], dv=cfg["dv"], mem_bits=int(cfg["mem_bits"]))
    return (MFP if cfg["neuron"] == "mfp" else LIF)(n, vth=vth, du=cfg["du"], dv=cfg["dv"],
                                                     learn_vth=bool(cfg["learn_threshold"]))


def _pool_neuron(n: int):
    """Spike max pooling: fires when any input of its window did (vth 0, no memory, exact)."""
    return LIF(n, vth=0, du=4095, dv=4095)


def build_layers(cfg: dict) -> list[SpikingLayer]:
    """The named architecture's layers (see docs/architectures.md); with ``readout`` the output layer's
    neurons are a non-spiking ``Readout`` (its du, dv; the class is the largest voltage summed over T)."""
    layers = _arch_layers(cfg)
    if cfg["readout"]:
        out = layers[-1].neuron
        layers[-1].neuron = Readout(out.n, out.vth0, du=out.du, dv=out.dv)
    return layers


def _arch_layers(cfg: dict) -> list[SpikingLayer]:
    """The layers of ``cfg``'s architecture, every one spiking."""
    q, b, arch = cfg["quant"], int(cfg["bits"]), cfg["arch"]
    b_first, b_last = int(cfg["first_bits"] or b), int(cfg["last_bits"] or b)
    sizes = [int(n) for n in cfg["sizes"]]
    if arch == "mlp":
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bits = b_last if i == len(sizes) - 2 else b_first if i == 0 else b
            syn = QuantDense(n_in, n_out, q, bits)
            scale = input_scale(cfg) if i == 0 else 1
            layers.append(SpikingLayer(f"fc{i + 1}", syn, _neuron(cfg, n_out, syn.unit, f"fc{i + 1}", scale)))
        return layers
    c1, c2 = (int(c) for c in cfg["channels"])
    layers, shape = [], tuple(int(d) for d in cfg["input_shape"])
    widths = cfg["widths"] or {}

    def add(name, syn, neuron=None, skips=()):
        nonlocal shape
        n = int(np.prod(syn.out_shape))
        scale = getattr(syn, "input_scale", 1)
        layers.append(SpikingLayer(name, syn, neuron or _neuron(cfg, n, syn.unit, name, scale), skips))
        shape = syn.out_shape

    def conv(name, c_out, stride=1, skips=()):
        c_out = int(widths.get(name, c_out))
        first = not layers
        add(name, QuantConv(shape, c_out, 3, q, b_first if first else b, stride=stride, padding=1, bn=cfg["bn"],
                            bias_exp_min=int(cfg["bias_exp_min"]), input_scale=input_scale(cfg) if first else 1),
            skips=skips)

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


def _input_max(synapse) -> int:
    """The largest |synaptic input| one step of ``synapse`` can give a neuron from 0/1 spikes: fan-in times
    the largest mantissa (``QuantSynapse``: round(1 / unit)), k * k for a sum pool, the gain of a skip."""
    if isinstance(synapse, QuantSynapse):
        return int(np.prod(synapse.weight.shape[1:])) * round(1.0 / synapse.unit)
    if isinstance(synapse, SumPool):
        return synapse.k * synapse.k
    return abs(int(synapse.gain))  # IdentitySkip


class QSNN(nn.Module):
    """Feed-forward QSNN; input spikes [T, N, n_in] -> list of every layer's spikes, flat [T, N, n]."""

    def __init__(self, cfg: dict):
        super().__init__()
        check_config(cfg)
        cfg = self.config = with_defaults(cfg)
        self.layers = nn.ModuleList(build_layers(cfg))
        # per layer: float32 where the worst case proves it exact (twice as fast as float64), else float64
        self.layer_dtypes = self.train_dtypes()

    def train_dtypes(self) -> list[torch.dtype]:
        """Each layer's training dtype: float32 where it holds every integer of that layer's training forward
        exactly, for inputs of the network's input code (0/1 spikes, or direct input up to ``input_scale``),
        else float64. Proven per layer on the worst case (each weight at the quantizer's largest mantissa,
        every input on at its largest value, the folded bias at its 13-bit, exp-7 limit) by
        ``dynamics.exact_dtype`` (no 24-bit wrap or saturation, every decay product |x| * odd(keep) < 2^24).
        A wide classifier (fan-in x mantissa beyond the bound) trains in float64 while the convolutions
        before it stay in float32; spikes (0 and 1) cross between the two exactly."""
        T, q_max = int(self.config["timesteps"]), input_scale(self.config)
        out = []
        for i, layer in enumerate(self.layers):
            n = layer.neuron
            a_max = (_input_max(layer.synapse) * (q_max if i == 0 else 1)
                     + sum(_input_max(m) * (q_max if src == ir.INPUT else 1)
                           for src, m in zip(layer.skip_sources, layer.skips)))
            b_max = (4096 << 7) if getattr(layer.synapse, "bn", None) is not None else 0
            p = dyn.LIFParams(vth=n.vth0, du=n.du, dv=n.dv, bias=b_max)  # the proof holds for any threshold
            out.append(torch.float32 if dyn.exact_dtype(p, a_max, T) == torch.float32 else torch.float64)
        return out

    def float32_exact(self) -> bool:
        """Whether every layer trains in float32 (``train_dtypes``)."""
        return all(d == torch.float32 for d in self.layer_dtypes)

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """The training loss's logits from the output layer's output [T, N, n_classes]: its spike counts, or for
        a readout its voltage summed over T in units of its threshold (vth << 6; a fixed positive scale, so the
        argmax, which is what deploys, is that of the voltage sum)."""
        n = self.layers[-1].neuron
        if isinstance(n, Readout):
            return out.sum(0) / float(n.vth0 << dyn.VTH_SHIFT)
        return out.sum(0)

    @property
    def input_bits(self) -> int:
        """Message bits of this network's input: 1 (0/1 spikes, rate code) or 2..8 (direct graded input)."""
        return input_bits(self.config)

    def set_epoch(self, epoch: int) -> None:
        """Advance per-epoch schedules (the sigmoid quantizer's temperature)."""
        for m in self.modules():
            if isinstance(m, SigmoidSum):
                m.set_epoch(epoch)

    def quantized_layers(self) -> list:
        """The layers whose synapse has trained, quantized weights (a ``QuantSynapse``: not the sum pools)."""
        return [layer for layer in self.layers if isinstance(layer.synapse, QuantSynapse)]

    def utilisation(self) -> dict:
        """QP-SNN Eq. 8 per layer: the fraction of the 2^b weight levels in use."""
        return {layer.name: utilisation(layer.synapse.integer_weight(), layer.synapse.bits)
                for layer in self.quantized_layers()}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Input spikes ``x`` [T, N, n_in] -> every layer's spikes, each flat [T, N, n].

        Training mode computes each layer in its ``train_dtypes`` float (surrogate gradients); eval mode in
        int64, the deployed integer network exactly."""
        if self.training:
            wide = x.numel() and dyn.max_abs(x) > input_scale(self.config)  # outside the code train_dtypes proved
            dtypes = [torch.float64] * len(self.layers) if wide else self.layer_dtypes
            s = x.to(dtypes[0])
        else:
            s = x.to(torch.int64)
            dtypes = [torch.int64] * len(self.layers)
        outputs, out = {ir.INPUT: s}, []
        # direct input repeats the same values at every step: the first synapse then runs once (exact)
        steady = self.config["input"] == "direct" and s.shape[0] > 1 and bool((s == s[:1]).all())
        for i, (layer, dtype) in enumerate(zip(self.layers, dtypes)):
            s = layer(s.to(dtype), outputs, steady=steady and i == 0)
            outputs[layer.name] = s
            out.append(s.flatten(2))
        return out


def declared_shapes(cfg: dict) -> dict:
    """{state_dict key: shape} of the weights and BatchNorm state ``cfg`` declares, from the model built
    on torch's meta device (nothing is allocated). The quantizer's own small state (sigmoid levels) is
    left out: the skeleton uses the uniform quantizer, whose tensors are the same otherwise."""
    check_config(cfg)
    skeleton = {**with_defaults(cfg), "quant": "uniform", "theta": 1.0}
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in QSNN(skeleton).state_dict().items()}


def check_state_shapes(cfg: dict, state_dict: dict) -> None:
    """Refuse a state_dict whose tensors the config does not declare with the same shapes, before the
    model is built: the tensors (already in memory) are the truth, so a config that claims far more
    neurons than its weights hold never allocates them."""
    for key, shape in declared_shapes(cfg).items():
        if key not in state_dict:
            raise QsnnError(f"tensor '{key}' is missing from the weights its config declares; the checkpoint is "
                            "incomplete, re-train")
        have = tuple(getattr(state_dict[key], "shape", ()))
        if have != shape:
            raise QsnnError(f"tensor '{key}' has shape {have} but the config (sizes, channels, input_shape, "
                            f"widths) declares {shape}: the weights do not match their config; re-train")


def build_model(cfg: dict, state_dict: dict | None = None) -> QSNN:
    """The model of ``cfg`` (checked first), with ``state_dict``'s weights when given (their shapes are
    checked against the config before anything is allocated)."""
    if state_dict is not None:
        check_state_shapes(cfg, state_dict)
    model = QSNN(cfg)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise QsnnError(f"checkpoint weights do not match its config ({' '.join(first[:2])[:200]})") from None
        for layer in model.layers:  # loaded BatchNorm state must fold into finite integers
            if getattr(layer.synapse, "bn", None) is not None:
                try:
                    layer.synapse.folded()
                except QsnnError as e:
                    raise QsnnError(f"layer '{layer.name}': {e}") from None
    return model


def predict(output_spikes: torch.Tensor) -> torch.Tensor:
    """Class = most output spikes over time; ties go to the lowest index (torch/numpy argmax rule)."""
    return output_spikes.sum(0).argmax(-1)
