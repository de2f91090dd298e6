"""A trainable model of any IR network: quantization-aware fine-tuning in the exact integer dynamics.

``IRModel(net)`` holds, for every synapse population of ``net`` (main synapses and skips, dense or conv),
latent float weights initialised at the IR's integer mantissas, and for every layer a latent bias
initialised at its ``bias_mant``. Its forward pass is the deployed network:

    mantissa = step * clamp(ste_round(latent / step), lo / step, hi / step)
    bias     = clamp(ste_round(latent_bias * bias_scale), -4096, 4095) << bias_exp      (13-bit mantissa)

then the reference simulator's arithmetic (``qsnn_lava.dynamics``: ``dense_accumulate``/``conv_accumulate``
with the synapse's ``weight_exp``, ``lif_run`` with the layer's vth, du, dv, and a qmem neuron's stored
membrane). In eval mode everything is int64 and equals ``reference.simulate`` of ``to_ir()`` exactly; in
training mode the same functions run on float64 tensors holding the same integers, with straight-through
rounding (and the floor of a negative ``weight_exp``) and the triangular surrogate spike.

What is learned and what is fixed:
  * weights: learned. ``[lo, hi]`` is ``ir.weight_limits`` of the layer's initial weights, so a synapse
    keeps its sign structure (all >= 0, all <= 0, or mixed) and stays within Loihi 2's 8-bit registers
    (a mixed conv at most [-128, 127]); a mixed dense matrix of even values in [-256, 254] stays even
    (``step`` 2). Latent weights are in mantissa units, so Adam's learning rate is (about) the number of
    mantissa steps a weight moves per optimiser step, whatever the bit width: what undoing a rounding needs.
  * biases: learned by default, within the 13-bit mantissa at the layer's fixed ``bias_exp``; ``bias_scale``
    is one main-synapse weight mantissa in bias mantissas (``2^(6 + weight_exp - bias_exp)``, at least 1), so
    the learning rate means the same for biases as for weights. ``biases=False`` keeps them fixed.
  * ``weight_exp``, ``vth``, ``du``, ``dv``, ``bias_exp``, a qmem neuron's ``mem_bits``/``mem_shift``, shapes,
    strides, paddings, groups and skips: fixed (the register layout the IR chose is kept).

``to_ir()`` writes the learned integers back into a copy of the network (validated: a fine-tuned network
that Loihi 2 cannot hold, e.g. a summed input beyond Lava's 32-bit update, is refused by field).
Recurrent synapses are not trained here: a layer that has them is refused by name.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from . import dynamics as dyn
from .errors import QsnnError
from .ir import BIAS_MANT_RANGE, INPUT, Network, weight_limits
from .quantizers import ste_round


def _synapse_range(syn) -> tuple[int, int, int]:
    """(lo, hi, step) of a synapse population's learned mantissas: its sign structure's legal range on
    Loihi 2 (``ir.weight_limits``; a mixed-sign conv at most [-128, 127]) and 2 where only even values fit."""
    lo, hi = weight_limits(syn.weight)
    if lo == -256:
        if syn.type == "conv":  # Lava's CPU Conv ignores weight_exp: no even 9-bit values
            return -128, 127, 1
        return lo, hi, 2
    return lo, hi, 1


class SynapseParams(nn.Module):
    """Latent weights of one IR synapse population (``ir.Dense`` or ``ir.Conv``), their legal range and the
    fixed fields (``weight_exp``; a conv's in_shape, stride, padding, groups)."""

    def __init__(self, syn):
        super().__init__()
        self.syn = syn  # the IR synapse: fixed fields, and the template of to_ir()
        self.lo, self.hi, self.step = _synapse_range(syn)
        self.latent = nn.Parameter(torch.from_numpy(syn.weight.astype(np.float64)))

    def mantissa(self) -> torch.Tensor:
        """Mantissas (float64 holding integers, straight-through gradient inside the legal range)."""
        m = ste_round(self.latent / self.step)
        return m.clamp(self.lo // self.step, self.hi // self.step) * self.step

    def integer_weight(self) -> torch.Tensor:
        """The mantissas as int64 (what is deployed)."""
        return self.mantissa().detach().round().to(torch.int64)

    def accumulate(self, s: torch.Tensor) -> torch.Tensor:
        """Synaptic input [T, N, n_out] for flat spikes ``s`` [T, N, n_in]: int64 exact in eval mode, float with
        straight-through gradients when training; ``reference.accumulate``'s arithmetic."""
        w = self.mantissa().to(s.dtype) if s.is_floating_point() else self.integer_weight()
        syn = self.syn
        if syn.type == "dense":
            return dyn.dense_accumulate(s, w, syn.weight_exp)
        a = dyn.conv_accumulate(s.reshape(*s.shape[:2], *syn.in_shape), w, syn.stride, syn.padding, syn.groups,
                                syn.weight_exp)
        return a.reshape(*s.shape[:2], -1)

    def to_ir(self):
        """A copy of the IR synapse with the learned mantissas."""
        out = copy.copy(self.syn)
        out.weight = self.integer_weight().numpy()
        return out


class LayerParams(nn.Module):
    """One IR layer: its synapse populations (main first, then skips) and its neurons' bias."""

    def __init__(self, layer, biases: bool):
        super().__init__()
        self.layer = layer
        self.synapses = nn.ModuleList([SynapseParams(layer.synapse)] + [SynapseParams(k.synapse) for k in layer.skips])
        n = layer.neuron
        self.bias_scale = max(1.0, 2.0 ** (dyn.ACT_SHIFT + layer.synapse.weight_exp - n.bias_exp))
        b = torch.from_numpy(n.bias_mant.astype(np.float64)) / self.bias_scale
        self.bias_latent = nn.Parameter(b, requires_grad=biases)

    def bias_mant(self) -> torch.Tensor:
        """Bias mantissas (float64 holding integers, straight-through inside the 13-bit range)."""
        return ste_round(self.bias_latent * self.bias_scale).clamp(*BIAS_MANT_RANGE)

    def params(self, like: torch.Tensor) -> dyn.LIFParams:
        """The layer's ``dynamics.LIFParams`` with the (learned) bias in ``like``'s number type. u wraps and v
        saturates everywhere, as on Loihi (the reference skips them only where a bound proves them idle)."""
        n = self.layer.neuron
        mant = self.bias_mant() if like.is_floating_point() else self.bias_mant().detach().round().to(torch.int64)
        bias = dyn.shift_exp(mant.to(like.dtype), n.bias_exp)  # bias_mant << bias_exp, as effective_bias
        return dyn.LIFParams(vth=n.vth, du=n.du, dv=n.dv, bias=bias, mem_bits=getattr(n, "mem_bits", 0),
                             mem_shift=getattr(n, "mem_shift", 0))

    def to_ir(self):
        """A copy of the IR layer with the learned weights and bias mantissas."""
        n = copy.copy(self.layer.neuron)
        n.bias_mant = self.bias_mant().detach().round().to(torch.int64).numpy()
        skips = [copy.copy(k) for k in self.layer.skips]
        for k, p in zip(skips, self.synapses[1:]):
            k.synapse = p.to_ir()
        out = copy.copy(self.layer)
        out.synapse, out.neuron, out.skips = self.synapses[0].to_ir(), n, skips
        return out


def _check_feedforward(net: Network) -> None:
    for i, layer in enumerate(net.layers):
        if layer.recurrent is not None or layer.neuron.type == "readout":
            what = "recurrent synapses" if layer.recurrent is not None else "a non-spiking readout (its voltage)"
            raise QsnnError(f"layer {i} ({layer.name}) has {what}, which finetune does not train yet; "
                            "fine-tune the network in the framework it came from and import it again")


class IRModel(nn.Module):
    """A trainable model of an IR ``Network`` (module docstring): input spikes [T, N, n_in] -> every layer's
    spikes [T, N, n]; int64 and exact in eval mode, float64 with surrogate gradients when training.

    Example:
        >>> import qsnn_lava as ql, numpy as np, torch
        >>> from qsnn_lava.irmodel import IRModel
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=4095))], 3)
        >>> model = IRModel(net).eval()
        >>> model(torch.tensor([[[1, 0]], [[0, 1]], [[1, 1]]]))[-1].ravel().tolist()
        [1, 0, 1]
        >>> model.to_ir().layers[0].synapse.weight.tolist()
        [[3, -1]]
    """

    def __init__(self, net: Network, biases: bool = True):
        super().__init__()
        net.check_structure()
        _check_feedforward(net)
        self.net = net
        self.layer_params = nn.ModuleList(LayerParams(layer, biases) for layer in net.layers)

    @property
    def layers(self) -> list:
        """The IR's layers (names for Records; ``training.evaluate`` reads them)."""
        return self.net.layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Input spikes ``x`` [T, N, n_in] -> every layer's spikes [T, N, n]: float64 when training, int64 in
        eval mode (the deployed network exactly)."""
        s = x.to(torch.float64) if self.training else x.to(torch.int64)
        outputs, out = {INPUT: s}, []
        for i, lp in enumerate(self.layer_params):
            a = None
            for (src, _), syn in zip(self.net.sources(i), lp.synapses):
                x_i = syn.accumulate(outputs[src])
                a = x_i if a is None else a + x_i
            spikes = dyn.lif_run(a, lp.params(a))
            outputs[lp.layer.name] = spikes
            out.append(spikes)
        return out

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """The training loss's logits: the output layer's spike counts over T (readouts are refused)."""
        return out.sum(0)

    def to_ir(self, validate: bool = True) -> Network:
        """The fine-tuned IR: the network's copy with the learned integers (validated unless told not to)."""
        net = Network(self.net.input_shape, [lp.to_ir() for lp in self.layer_params], self.net.timesteps,
                      dict(self.net.meta))
        if validate:
            try:
                net.validate()
            except QsnnError as e:
                raise QsnnError(f"the fine-tuned network does not fit Loihi 2: {e}; lower lr or freeze the biases") \
                    from None
        return net


def finetune(net: Network, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
             epochs: int, lr: float = 0.05, batch_size: int = 64, seed: int = 0, biases: bool = True,
             progress: bool = False) -> tuple[Network, dict]:
    """Quantization-aware fine-tuning of IR ``net`` on spikes ``x_train`` [T, N, n_in] with labels ``y_train``:
    Adam (cosine schedule over ``epochs``) on cross-entropy of the output layer's spike counts, as ``train``.

    Returns (the fine-tuned, validated Network, history: epoch, loss, train_acc, test_acc per epoch on
    ``x_test``/``y_test`` (the eval model, which is the deployed network), test_acc_before, seconds)."""
    import time

    from .training import evaluate, run_epoch, set_seed

    set_seed(seed)
    model = IRModel(net, biases=biases)
    before = evaluate(model, x_test).accuracy(y_test)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    hist = {"epoch": [], "loss": [], "train_acc": [], "test_acc": [], "test_acc_before": before}
    xt, yt = torch.from_numpy(x_train.astype(np.float64)), torch.from_numpy(np.asarray(y_train, np.int64))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, desc="finetune", unit="epoch")
    t0 = time.perf_counter()
    for epoch in range(epochs):
        stats = run_epoch(model, opt, xt, yt, batch_size, gen)
        loss, train_acc = stats["loss"], stats["train_acc"]
        sched.step()
        test_acc = evaluate(model, x_test).accuracy(y_test)
        for k, v in (("epoch", epoch + 1), ("loss", loss), ("train_acc", train_acc), ("test_acc", test_acc)):
            hist[k].append(v)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", test=f"{test_acc:.3f}")
    if bar:
        bar.close()
    hist["seconds"] = time.perf_counter() - t0
    return model.to_ir(), hist
