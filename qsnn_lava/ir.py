"""The deployable network as plain dataclasses, and its versioned HDF5 file format.

Every representation converts to and from this: checkpoints (converters.checkpoint), Lava process
graphs (converters.lava_graph), and every backend runs it (deploy.backends). Fields keep Lava's names
and integer units, so a reader can hold the IR next to Lava's source; ``qsnn_lava.dynamics`` says
what they compute.

A network is a sequence of layers; a layer is one synapse population (Dense) feeding one CUBA LIF
population. Shapes are flat neuron counts for now.

File layout (``/`` attributes ``format = "qsnn-lava-ir"``, ``version``)::

    /attrs: format, version, timesteps, input_shape, meta (JSON)
    /layers/<i>/attrs: name, weight_bits
    /layers/<i>/synapse/attrs: type ("dense"), weight_exp;   dataset weight (int16 [n_out, n_in])
    /layers/<i>/neuron/attrs:  type ("lif"), vth, du, dv, bias_exp;  dataset bias_mant (int16 [n])

Readers and writers are a registry keyed by the ``type`` attribute, so new primitives stay flat.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import QsnnError
from .io import atomic_write

FORMAT = "qsnn-lava-ir"
VERSION = 1

# Register widths of Loihi 2 as exposed by Lava (lava/proc/lif/models.py, lava/utils/weightutils.py).
VTH_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa
DECAY_MAX = 4095  # 12-bit du, dv
BIAS_MANT_RANGE = (-(1 << 12), (1 << 12) - 1)  # 13-bit signed
BIAS_EXP_RANGE = (0, 7)  # 3-bit unsigned
WEIGHT_EXP_RANGE = (-8, 7)
INT32_SAFE = (1 << 31) - (1 << 23)  # |a << 6| must stay below this for Lava's int32 current update


@dataclass
class Violation:
    """A value a Loihi 2 register cannot hold: where, which field, the value, the legal range, the fix."""

    where: str
    field: str
    value: int
    lo: int
    hi: int
    fix: str

    def __str__(self) -> str:
        return (f"{self.where}: {self.field} = {self.value} is outside the Loihi 2 range "
                f"[{self.lo}, {self.hi}]; {self.fix}")


def check_range(where: str, field_name: str, value, lo: int, hi: int, fix: str) -> list:
    """[] when every value lies in [lo, hi], else one Violation naming the worst offender."""
    arr = np.asarray(value)
    if arr.size == 0:
        return []
    vmin, vmax = int(arr.min()), int(arr.max())
    if vmin < lo or vmax > hi:
        return [Violation(where, field_name, vmin if vmin < lo else vmax, lo, hi, fix)]
    return []


def weight_limits(weight: np.ndarray) -> tuple[int, int]:
    """Legal integer weight range on Loihi 2 for a matrix of this sign structure.

    One sign (all >= 0 or all <= 0): an 8-bit magnitude, |w| <= 255. Mixed signs: 8 bits + sign,
    which holds [-128, 127] exactly; even values in [-256, 254] also fit (one bit lower exponent), so
    a mixed matrix is legal when it is within [-128, 127] or all even within [-256, 254].
    """
    if weight.size == 0 or weight.min() >= 0:
        return 0, 255
    if weight.max() <= 0:
        return -255, 0
    if (weight % 2 == 0).all():
        return -256, 254
    return -128, 127


@dataclass
class Dense:
    """All-to-all synapses: ``a_i = (sum_j weight[i, j] * s_j)`` shifted by ``weight_exp`` (floor)."""

    weight: np.ndarray
    weight_exp: int = 0
    type = "dense"

    def __post_init__(self):
        self.weight = np.asarray(self.weight)
        if self.weight.ndim != 2:
            raise QsnnError(f"dense weight must be 2-D [n_out, n_in], got shape {self.weight.shape}")
        if not np.issubdtype(self.weight.dtype, np.integer):
            if not np.all(np.mod(self.weight, 1) == 0):
                raise QsnnError("dense weight must hold integers (mantissas), found fractional values")
        self.weight = self.weight.astype(np.int64)
        self.weight_exp = int(self.weight_exp)

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def violations(self, where: str) -> list:
        lo, hi = weight_limits(self.weight)
        out = check_range(where, "weight", self.weight, lo, hi,
                          "retrain with fewer weight bits (mixed-sign odd mantissas hold at most 7 bits "
                          "plus sign on Loihi 2)")
        out += check_range(where, "weight_exp", self.weight_exp, *WEIGHT_EXP_RANGE, "rescale weights and vth")
        worst = int(np.abs(self.weight).sum(axis=1).max()) if self.weight.size else 0
        worst = worst << self.weight_exp if self.weight_exp >= 0 else worst >> -self.weight_exp
        out += check_range(where, "worst-case synaptic input << 6", worst << 6, 0, INT32_SAFE - 1,
                           "Lava's 32-bit current update would overflow; lower weight_exp or the weights")
        return out

    def to_h5(self, g) -> None:
        g.attrs["type"] = self.type
        g.attrs["weight_exp"] = self.weight_exp
        g.create_dataset("weight", data=self.weight.astype(np.int16))

    @classmethod
    def from_h5(cls, g) -> "Dense":
        return cls(weight=_dataset(g, "weight"), weight_exp=int(_attr(g, "weight_exp")))


@dataclass
class LIF:
    """CUBA LIF population (see qsnn_lava.dynamics for the exact per-step arithmetic)."""

    n: int
    vth: int
    du: int
    dv: int
    bias_mant: np.ndarray | None = None
    bias_exp: int = 0
    type = "lif"

    def __post_init__(self):
        self.n, self.vth, self.du, self.dv, self.bias_exp = (
            int(self.n), int(self.vth), int(self.du), int(self.dv), int(self.bias_exp))
        b = np.zeros(self.n, np.int64) if self.bias_mant is None else np.asarray(self.bias_mant)
        self.bias_mant = np.broadcast_to(b, (self.n,)).astype(np.int64).copy()

    def violations(self, where: str) -> list:
        return (check_range(where, "vth", self.vth, 0, VTH_MAX, "scale weights down or the threshold")
                + check_range(where, "du", self.du, 0, DECAY_MAX, "du is a 12-bit decay (4095 = no current memory)")
                + check_range(where, "dv", self.dv, 0, DECAY_MAX, "dv is a 12-bit decay")
                + check_range(where, "bias_mant", self.bias_mant, *BIAS_MANT_RANGE, "use a larger bias_exp")
                + check_range(where, "bias_exp", self.bias_exp, *BIAS_EXP_RANGE, "bias_exp is 3-bit unsigned"))

    def to_h5(self, g) -> None:
        g.attrs["type"] = self.type
        for k in ("n", "vth", "du", "dv", "bias_exp"):
            g.attrs[k] = getattr(self, k)
        g.create_dataset("bias_mant", data=self.bias_mant.astype(np.int16))

    @classmethod
    def from_h5(cls, g) -> "LIF":
        kw = {k: int(_attr(g, k)) for k in ("n", "vth", "du", "dv", "bias_exp")}
        return cls(bias_mant=_dataset(g, "bias_mant"), **kw)


SYNAPSES = {Dense.type: Dense}
NEURONS = {LIF.type: LIF}


@dataclass
class Layer:
    name: str
    synapse: Dense
    neuron: LIF
    weight_bits: int = 8  # bit width the weights were trained at (informative)


@dataclass
class Network:
    """A feed-forward spiking network; input and every layer's output are binary spikes, time-major."""

    input_shape: tuple
    layers: list
    timesteps: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(d) for d in self.input_shape)
        self.timesteps = int(self.timesteps)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    def check_structure(self) -> None:
        """Shapes and counts that must hold for the network to mean anything (raises QsnnError)."""
        if not self.layers:
            raise QsnnError("network has no layers")
        if self.timesteps < 1:
            raise QsnnError(f"timesteps = {self.timesteps} must be >= 1")
        n_prev = self.n_in
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            if layer.synapse.n_in != n_prev:
                raise QsnnError(f"{where}: synapse expects {layer.synapse.n_in} inputs but the previous "
                                f"layer has {n_prev} neurons")
            if layer.synapse.n_out != layer.neuron.n:
                raise QsnnError(f"{where}: synapse has {layer.synapse.n_out} outputs but the neuron "
                                f"population has {layer.neuron.n}")
            n_prev = layer.neuron.n

    def violations(self) -> list:
        """Every register-width violation of every layer (the design-rule check's core)."""
        self.check_structure()
        out = []
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            out += layer.synapse.violations(where) + layer.neuron.violations(where)
        return out

    def validate(self) -> "Network":
        bad = self.violations()
        if bad:
            more = f" (and {len(bad) - 1} more; `qsnn-lava deploy` lists them all)" if len(bad) > 1 else ""
            raise QsnnError(f"{bad[0]}{more}")
        return self

    def save(self, path) -> None:
        """Validate, then write atomically (temporary name, then rename)."""
        import h5py

        self.validate()
        with atomic_write(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["version"] = VERSION
                f.attrs["timesteps"] = self.timesteps
                f.attrs["input_shape"] = np.asarray(self.input_shape, np.int64)
                f.attrs["meta"] = json.dumps(self.meta, sort_keys=True)
                for i, layer in enumerate(self.layers):
                    g = f.create_group(f"layers/{i}")
                    g.attrs["name"] = layer.name
                    g.attrs["weight_bits"] = layer.weight_bits
                    layer.synapse.to_h5(g.create_group("synapse"))
                    layer.neuron.to_h5(g.create_group("neuron"))

    @classmethod
    def load(cls, path, validate: bool = True) -> "Network":
        """Read an IR file; with ``validate=False`` register widths are left to the caller's DRC."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise QsnnError(f"IR file '{path}' not found; create one with `qsnn-lava convert CKPT -o {path}`")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise QsnnError(f"'{path}' is not an HDF5 file ({e.__class__.__name__}); "
                            "pass an IR written by `qsnn-lava convert`") from None
        with f:
            if f.attrs.get("format") != FORMAT:
                raise QsnnError(f"'{path}' is HDF5 but not a qsnn-lava IR (missing format='{FORMAT}'); "
                                "a lava-dl netx file needs `qsnn-lava import-netx`")
            version = int(f.attrs.get("version", -1))
            if version != VERSION:
                raise QsnnError(f"'{path}' has IR format version {version}; this qsnn-lava reads version "
                                f"{VERSION}. Re-run `qsnn-lava convert` on the checkpoint")
            try:
                layers = []
                groups = f["layers"]
                for i in range(len(groups)):
                    g = groups[str(i)]
                    syn, neu = g["synapse"], g["neuron"]
                    layers.append(Layer(
                        name=str(_attr(g, "name")),
                        synapse=_registered(SYNAPSES, syn, f"layer {i} synapse").from_h5(syn),
                        neuron=_registered(NEURONS, neu, f"layer {i} neuron").from_h5(neu),
                        weight_bits=int(_attr(g, "weight_bits")),
                    ))
                net = cls(input_shape=tuple(_attr(f, "input_shape")), layers=layers,
                          timesteps=int(_attr(f, "timesteps")), meta=json.loads(_attr(f, "meta")))
            except KeyError as e:
                raise QsnnError(f"'{path}': IR is missing {e.args[0]}; the file is incomplete or "
                                "corrupt, re-run `qsnn-lava convert`") from None
        try:
            return net.validate() if validate else (net.check_structure() or net)
        except QsnnError as e:
            raise QsnnError(f"'{path}': {e}") from None


def _attr(g, key):
    if key not in g.attrs:
        raise KeyError(f"attribute '{key}' of {g.name}")
    return g.attrs[key]


def _dataset(g, key):
    if key not in g:
        raise KeyError(f"dataset '{g.name}/{key}'")
    return g[key][()]


def _registered(registry: dict, g, where: str):
    kind = g.attrs.get("type")
    if kind not in registry:
        raise QsnnError(f"{where}: type '{kind}' is not supported (known: {', '.join(sorted(registry))})")
    return registry[kind]
