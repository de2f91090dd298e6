"""Quantized spiking networks whose eval forward is the deployed integer network, exactly.

Training mode runs the same integer dynamics (qsnn_lava.dynamics) on float64 tensors with straight-
through rounding and surrogate spikes; eval mode runs them on int64 tensors. Both call the same
functions with the same integer weights, so the accuracy of the eval model *is* the deployed accuracy.
"""
from __future__ import annotations

import torch
from torch import nn

from . import dynamics as dyn
from .errors import QsnnError
from .neurons import LIF, MFP
from .quantizers import QUANT_NAMES, SIGMOID_QUANTS, SigmoidSum, quantize, threshold_mantissa, utilisation

DEFAULT_CONFIG = {
    "arch": "mlp",
    "sizes": [64, 256, 10],
    "quant": "uniform",
    "bits": 4,
    "neuron": "lif",
    "theta": 2.0,  # firing threshold in real weight units (vth = theta / unit)
    "du": 4095,  # QP-SNN LIF: no synaptic current memory
    "dv": 2048,  # tau = 0.5
    "timesteps": 8,
}


NEURON_DEFAULTS = {"lif": {"du": 4095, "dv": 2048}, "mfp": {"du": 2047, "dv": 4095}}


def make_config(**overrides) -> dict:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(NEURON_DEFAULTS.get(overrides.get("neuron") or "lif", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    missing = [k for k in DEFAULT_CONFIG if k not in cfg]
    if missing:
        raise QsnnError(f"model config lacks {', '.join(missing)}")
    if cfg["arch"] != "mlp":
        raise QsnnError(f"architecture '{cfg['arch']}' is not supported (known: mlp)")
    if cfg["quant"] not in QUANT_NAMES:
        raise QsnnError(f"quantizer '{cfg['quant']}' is not supported (known: {', '.join(QUANT_NAMES)})")
    if cfg["neuron"] not in NEURON_DEFAULTS:
        raise QsnnError(f"neuron '{cfg['neuron']}' is not supported (known: {', '.join(NEURON_DEFAULTS)})")
    if not 1 <= int(cfg["bits"]) <= 8:
        raise QsnnError(f"bits = {cfg['bits']} is out of range; Loihi weights hold 1 to 8 bits")
    if cfg["quant"] == "ternary" and int(cfg["bits"]) != 2:
        raise QsnnError("ternary weights take 2 bits on the target: pass --bits 2")
    sizes = cfg["sizes"]
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise QsnnError(f"sizes = {sizes} must list at least an input and an output width, all >= 1")
    if not (0 <= int(cfg["du"]) <= 4095 and 0 <= int(cfg["dv"]) <= 4095):
        raise QsnnError("du and dv are 12-bit decays in [0, 4095]")
    if int(cfg["timesteps"]) < 1:
        raise QsnnError("timesteps must be >= 1")


class QuantDense(nn.Module):
    """Dense synapses with latent float weights and integer mantissas ``m`` (deployed as Lava weights)."""

    def __init__(self, n_in: int, n_out: int, quant: str, bits: int):
        super().__init__()
        self.quant, self.bits = quant, int(bits)
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        nn.init.uniform_(self.weight, -2.0 / n_in ** 0.5, 2.0 / n_in ** 0.5)
        if quant in SIGMOID_QUANTS:
            self.quantizer = SigmoidSum(self.bits, self.weight, ternary=quant == "ternary")
            self.unit = 1.0 / self.quantizer.max_level
        else:
            self.unit = quantize(quant, self.weight.detach(), self.bits)[1]

    def mantissa(self) -> torch.Tensor:
        """Mantissas: integers in eval mode; while training, straight-through (uniform, rescaw) or the
        soft sigmoid staircase (sigmoid, ternary)."""
        if self.quant in SIGMOID_QUANTS:
            return self.quantizer(self.weight, hard=not self.training)
        return quantize(self.quant, self.weight, self.bits)[0]

    def integer_weight(self) -> torch.Tensor:
        return self.mantissa().detach().round().to(torch.int64)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        w = self.mantissa().to(torch.float64) if self.training else self.integer_weight()
        return dyn.dense_accumulate(s, w, weight_exp=0)


class SpikingDense(nn.Module):
    """One deployable layer: QuantDense synapses into a LIF population."""

    def __init__(self, n_in: int, n_out: int, cfg: dict, name: str):
        super().__init__()
        self.name = name
        self.synapse = QuantDense(n_in, n_out, cfg["quant"], cfg["bits"])
        vth = threshold_mantissa(float(cfg["theta"]), self.synapse.unit, name)
        self.neuron = (MFP if cfg["neuron"] == "mfp" else LIF)(n_out, vth=vth, du=cfg["du"], dv=cfg["dv"])

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.synapse(s))


class QSNN(nn.Module):
    """Feed-forward QSNN; input spikes [T, N, n_in] -> list of every layer's spikes [T, N, n]."""

    def __init__(self, cfg: dict):
        super().__init__()
        check_config(cfg)
        self.config = dict(cfg)
        sizes = [int(n) for n in cfg["sizes"]]
        self.layers = nn.ModuleList(
            SpikingDense(a, b, cfg, name=f"fc{i + 1}") for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))

    def set_epoch(self, epoch: int) -> None:
        """Advance per-epoch schedules (the sigmoid quantizer's temperature)."""
        for m in self.modules():
            if isinstance(m, SigmoidSum):
                m.set_epoch(epoch)

    def utilisation(self) -> dict:
        """QP-SNN Eq. 8 per layer: the fraction of the 2^b weight levels in use."""
        return {layer.name: utilisation(layer.synapse.integer_weight(), layer.synapse.bits) for layer in self.layers}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = x.to(torch.float64) if self.training else x.to(torch.int64)
        out = []
        for layer in self.layers:
            s = layer(s)
            out.append(s)
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
