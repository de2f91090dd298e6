"""An open resource estimate for Loihi 2: neurons, synaptic memory, cores and chips per layer.

Intel's Loihi 2 compiler (lava-loihi) is not public, so nothing here is read from it. The estimate is a
small explicit model whose parameters each name a source (``ChipModel``), calibrated against the one
public record of real Loihi 2 mappings we found: the compiler logs printed in lava-dl's PilotNet
notebooks (see ``pilotnet_lif_shapes`` and docs/resources.md). Numbers are ESTIMATES; print the
ChipModel next to them.

Model (per layer; ``b`` = weight bits, ``W`` = ``synmem_word_bits``; every division rounds up)::

    dense, n neurons on a core, fan-in F, density d = n_synapses / (n_neurons * F):
        SynMem units = F * ceil((ceil(n * d) * (b + dense_extra_bits) + dense_axon_overhead_bits) / W)
        (one row of words per input axon, holding that axon's synapses to the core's neurons)
    conv, c output channels on a core, kernel kh x kw, C_in input channels:
        SynMem units = kh * kw * C_in * ceil(c * (b + conv_extra_bits) / W)
        (the kernel is shared: every core holding a slice of the layer stores its channels' kernels once)
    input (neurons driven by bias, no synapses): 0 units.
    A core holds at most max_neurons_per_core neurons and synmem_units_per_core units.

Two core counts per layer:
  * ``cores``: the split the Lava-Loihi compiler was seen to make. Dense: start with one core; while a
    core violates a limit, multiply the number of parts by ceil(worst allocation / limit) and give each
    part ceil(n / parts) neurons (the log's "Violation ... allocation=61440 ... Final max_ratio=6" lines).
    Conv / input: slice the output along its width into w columns of full height and all channels, w the
    largest power of two <= width whose slice fits (the log's "Conv(16, 66, 3)" partitions: 16, 4, 4, 8,
    8, 16 columns).
  * ``cores_packed``: the fewest cores the same limits allow (a lower bound no compiler is promised to
    reach).
Chips = ceil(cores / cores_per_chip). Routing, axon memory, embedded cores and I/O are not modelled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.io import read_json_object

KINDS = ("input", "dense", "conv")


# ---------------------------------------------------------------------------------------------------
# Layer shapes
# ---------------------------------------------------------------------------------------------------

@dataclass
class LayerShape:
    """What the estimate needs of a layer, independent of qsnn_lava.ir (so conv nets can be described).

    ``n_synapses``: stored synapses. Dense: nonzero weights when zeros are not stored (sparse mapping),
    else n_neurons * fan_in. Conv: the weight count C_out * C_in * kh * kw (shared, stored per core).
    ``kernel_params`` (conv, and input with a C, H, W shape): ``out_chw``; conv also ``in_chw``,
    ``kernel``, ``stride``, ``padding`` as (h, w) pairs (torch order).
    """

    name: str
    kind: str
    n_neurons: int
    fan_in: int
    n_synapses: int
    weight_bits: int
    kernel_params: dict | None = None

    def __post_init__(self):
        where = f"layer '{self.name}'"
        if self.kind not in KINDS:
            raise QsnnError(f"{where}: kind '{self.kind}' is not one of {', '.join(KINDS)}")
        for key in ("n_neurons", "fan_in", "n_synapses", "weight_bits"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise QsnnError(f"{where}: {key} = {v!r} must be a non-negative integer")
            setattr(self, key, int(v))
        if self.n_neurons < 1:
            raise QsnnError(f"{where}: n_neurons must be >= 1")
        if self.kind == "input":
            if self.fan_in or self.n_synapses:
                raise QsnnError(f"{where}: an input layer has no synapses (fan_in = n_synapses = 0)")
        else:
            if self.fan_in < 1 or not 1 <= self.weight_bits <= 9:
                raise QsnnError(f"{where}: needs fan_in >= 1 and weight_bits in [1, 9] (Loihi 2 holds 8 "
                                f"bits + sign), got fan_in = {self.fan_in}, weight_bits = {self.weight_bits}")
        if self.kind == "dense" and self.n_synapses > self.n_neurons * self.fan_in:
            raise QsnnError(f"{where}: {self.n_synapses} synapses exceed n_neurons * fan_in = "
                            f"{self.n_neurons * self.fan_in}")
        if self.kind == "conv":
            kp = self.kernel_params or {}
            missing = [k for k in ("in_chw", "out_chw", "kernel") if k not in kp]
            if missing:
                raise QsnnError(f"{where}: conv kernel_params lack {', '.join(missing)}; build it with "
                                "conv_shape()")
        if self.kernel_params and "out_chw" in self.kernel_params:
            c, h, w = self.kernel_params["out_chw"]
            if c * h * w != self.n_neurons:
                raise QsnnError(f"{where}: out_chw {tuple(self.kernel_params['out_chw'])} holds {c * h * w} "
                                f"neurons, not n_neurons = {self.n_neurons}")


def shapes_from_ir(net, sparse: bool = True) -> list:
    """LayerShapes of a qsnn_lava.ir.Network (the spike input takes no core).

    A layer whose main synapse is Dense is a "dense" shape: ``sparse=True`` counts only nonzero weights as
    synapses (pruned zeros are free when the layer is mapped sparse); ``sparse=False`` counts every weight
    (a dense mapping stores zeros too). A Conv main synapse (pooling included) is a "conv" shape: fan-in
    C_in / groups * kh * kw, synapses = the kernel's weights (shared, stored whole). Skip synapses join the
    layer they feed: a skip adds its fan-in (Dense: its inputs; Conv into a conv layer: its kernel rows
    C_in / groups * kh * kw; Conv into a dense layer: its inputs, unrolled) and its synapses (Dense or
    unrolled Conv: nonzero or all matrix entries as above; Conv into a conv layer: its kernel's weights).
    """
    from qsnn_lava.metrics import fanouts

    out = []
    for i, layer in enumerate(net.layers):
        main = layer.synapse
        conv = main.type == "conv"
        fan_in = n_syn = 0
        for _, syn in net.populations(i):
            w = np.asarray(syn.weight)
            if conv and syn.type == "conv":
                fan_in += int(np.prod(w.shape[1:]))
                n_syn += int(w.size)
            elif syn.type == "dense":
                fan_in += int(syn.n_in)
                n_syn += int(np.count_nonzero(w)) if sparse else int(w.size)
            else:  # a conv skip into a dense-mapped layer is stored unrolled
                fan_in += int(syn.n_in)
                n_syn += int(fanouts(syn)[0 if sparse else 1].sum())
        name, bits = layer.name or f"layer{i}", int(layer.weight_bits)
        if conv:
            kp = {"in_chw": tuple(main.in_shape), "out_chw": tuple(main.out_shape), "kernel": tuple(main.kernel),
                  "stride": tuple(main.stride), "padding": tuple(main.padding), "groups": int(main.groups)}
            out.append(LayerShape(name, "conv", int(layer.neuron.n), fan_in, n_syn, bits, kp))
        else:
            out.append(LayerShape(name, "dense", int(layer.neuron.n), fan_in, n_syn, bits))
    return out


def _pair(v, what: str, name: str) -> tuple:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in t):
        raise QsnnError(f"conv '{name}': {what} must be an int or an (h, w) pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def conv_shape(name: str, in_chw, out_channels: int, kernel, stride=1, padding=0,
               weight_bits: int = 8) -> LayerShape:
    """A 2-D convolution (groups = 1, dilation = 1) as a LayerShape; kernel/stride/padding int or (h, w).

    Output size per axis: floor((in + 2 * padding - kernel) / stride) + 1 (torch's rule).
    Neurons C_out * H_out * W_out; fan-in C_in * kh * kw; n_synapses = weights = C_out * C_in * kh * kw.
    """
    c_in, h_in, w_in = (int(x) for x in in_chw)
    (kh, kw), (sh, sw), (ph, pw) = (_pair(kernel, "kernel", name), _pair(stride, "stride", name),
                                    _pair(padding, "padding", name))
    if min(c_in, h_in, w_in, out_channels, kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise QsnnError(f"conv '{name}': sizes, kernel and stride must be >= 1 and padding >= 0")
    h_out = (h_in + 2 * ph - kh) // sh + 1
    w_out = (w_in + 2 * pw - kw) // sw + 1
    if h_out < 1 or w_out < 1:
        raise QsnnError(f"conv '{name}': a {kh}x{kw} kernel does not fit the padded {h_in}x{w_in} input")
    fan_in = c_in * kh * kw
    return LayerShape(name, "conv", n_neurons=out_channels * h_out * w_out, fan_in=fan_in,
                      n_synapses=out_channels * fan_in, weight_bits=weight_bits,
                      kernel_params={"in_chw": (c_in, h_in, w_in), "out_chw": (int(out_channels), h_out, w_out),
                                     "kernel": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)})


# ---------------------------------------------------------------------------------------------------
# Chip model
# ---------------------------------------------------------------------------------------------------

@dataclass
class ChipModel:
    """Loihi 2 limits used by the estimate. Every default has its source; override any from JSON.

    PilotNet log = the Lava-Loihi compiler output printed in lava-dl's
    tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (commit dad9dfad9d81744bc8f21876f1e4bac46beeda8d,
    cell 8: "Per core distribution", 74 cores) and pilotnet_sdnn/benchmark.ipynb (commit 1878d6d4, 61 cores).
    """

    name: str = "loihi2-pilotnet-calibrated"
    # Loihi 2 has 128 neurocores per chip (secondary sources; informative only, chips use cores_per_chip).
    physical_cores_per_chip: int = 128
    # The public Lava mapper places N3 (Loihi 2) logical cores 120 to a chip:
    # lava/magma/compiler/subcompilers/constants.py NUM_VIRTUAL_CORES_L3 = 120, used in mapper.py.
    cores_per_chip: int = 120
    # FITTED to the PilotNet log: the largest neuron count it placed on one core is 3168 (input layer,
    # slice Conv(16, 66, 3)); every slice of 4096 or more was split further, so anything in [3168, 4095]
    # reproduces the log; we take the observed value (conservative). Secondary sources quote "up to 8K
    # neurons per core" (simpler neuron models); LIF never got near it in the log.
    max_neurons_per_core: int = 3168
    # READ from the PilotNet log: "reg_name='SynMem' ... self.cost_db.registers[reg_name]=12000".
    synmem_units_per_core: int = 12000
    # ASSUMPTION: one SynMem unit is a 64-bit word (12000 x 64 bits = 96 KB, within the ~128 KB SRAM per
    # core of secondary sources). With 64 the dense data below force one integer synapse width; 16- and
    # 32-bit units fit no width (docs/resources.md).
    synmem_word_bits: int = 64
    # FITTED to the PilotNet-LIF log's dense SynMem numbers (61440 = 100 neurons x 2560 inputs unsplit,
    # 12800 at 17 neurons, mean 7253 over 12 cores, 1300, 150, 10): with 64-bit units they force exactly
    # 15 bits per dense synapse and 19..36 overhead bits per input axon. We split 15 = 8 weight bits +
    # 7 extra (index/format) bits ASSUMING PilotNet's dense weights are 8-bit (the weights are not
    # readable here); a weight-bit change then costs one bit per synapse. That split is our assumption.
    dense_extra_bits: int = 7
    dense_axon_overhead_bits: int = 32  # any of 19..32 also fits the SDNN log (16 bits per synapse)
    # ASSUMPTION: a conv weight costs its weight bits, no extra. The log's conv rows (81, 864, 1620, 2160,
    # 2880 units) equal kh*kw*C_in*ceil(C_out*b/64) with b = 6, 6, 6, 5, 5: effective widths below the
    # nominal 8, which overestimates conv memory here (conv memory binds no PilotNet layer).
    conv_extra_bits: int = 0
    # No public fan-in limit for Loihi 2 is known: None = no limit beyond synaptic memory. The log shows
    # 2560 input axons on one core.
    max_fan_in: int | None = None

    def __post_init__(self):
        self._check("ChipModel")

    def _check(self, where: str) -> None:
        if not isinstance(self.name, str):
            raise QsnnError(f"{where}: key 'name' = {self.name!r} must be a string")
        for f in fields(self):
            if f.name == "name":
                continue
            v = getattr(self, f.name)
            if f.name == "max_fan_in" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise QsnnError(f"{where}: key '{f.name}' = {v!r} must be an integer")
            if v < 0:
                raise QsnnError(f"{where}: key '{f.name}' = {v} is negative; it must be >= 0")
            if v == 0 and f.name not in ("dense_extra_bits", "dense_axon_overhead_bits", "conv_extra_bits"):
                raise QsnnError(f"{where}: key '{f.name}' = 0; it must be >= 1")
            setattr(self, f.name, int(v))

    @classmethod
    def from_json(cls, path) -> "ChipModel":
        """The chip model of the JSON file ``path``: the defaults, overridden by the object's keys (the field names,
        integer counts and bits). QsnnError naming the file and the bad key."""
        path = Path(path)
        data = read_json_object(path, "chip model")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise QsnnError(f"chip model '{path}': unknown key '{key}'; known keys: {', '.join(known)}")
        model = cls.__new__(cls)
        for f in fields(cls):
            setattr(model, f.name, data.get(f.name, getattr(cls, f.name)))
        model._check(f"chip model '{path}'")
        return model


# ---------------------------------------------------------------------------------------------------
# Per-core costs
# ---------------------------------------------------------------------------------------------------

def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def dense_synmem(layer: LayerShape, n_core: int, chip: ChipModel) -> int:
    """SynMem units (words of ``chip.synmem_word_bits``) that ``n_core`` neurons of the dense layer ``layer``
    take on one core of ``chip`` (module docstring formula)."""
    per_axon = _ceil_div(n_core * layer.n_synapses, layer.n_neurons * layer.fan_in)  # ceil(n * density)
    bits = per_axon * (layer.weight_bits + chip.dense_extra_bits) + chip.dense_axon_overhead_bits
    return layer.fan_in * _ceil_div(bits, chip.synmem_word_bits)


def conv_synmem(layer: LayerShape, c_core: int, chip: ChipModel) -> int:
    """SynMem units (words of ``chip.synmem_word_bits``) of a core of ``chip`` holding ``c_core`` output
    channels of the conv layer ``layer`` (kernel rows kh * kw * C_in = fan-in)."""
    return layer.fan_in * _ceil_div(c_core * (layer.weight_bits + chip.conv_extra_bits), chip.synmem_word_bits)


def _largest(ok, hi: int) -> int:
    """Largest k in [0, hi] with ok(k) (ok monotone decreasing, ok(0) true)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _dense(layer: LayerShape, chip: ChipModel) -> dict:
    n, nmax, budget = layer.n_neurons, chip.max_neurons_per_core, chip.synmem_units_per_core
    cap_syn = _largest(lambda k: dense_synmem(layer, k, chip) <= budget, nmax)
    if cap_syn == 0:
        return _unmappable("synaptic memory",
                           f"one neuron with fan-in {layer.fan_in} needs {dense_synmem(layer, 1, chip)} SynMem "
                           f"units, above the {budget} of a core")
    capacity = min(cap_syn, nmax)
    binding = "neurons" if cap_syn >= nmax else "synaptic memory"
    parts = 1
    while True:  # the compiler's split: parts *= ceil(worst allocation / limit) until nothing is violated
        part = _ceil_div(n, parts)
        ratio = max(part / nmax, dense_synmem(layer, part, chip) / budget)
        if ratio <= 1:
            break
        parts *= math.ceil(ratio)
    cores = _ceil_div(n, part)
    sizes = [part] * (cores - 1) + [n - part * (cores - 1)]
    mems = [dense_synmem(layer, s, chip) for s in sizes]
    return {"fits": True, "binding": binding, "capacity": capacity, "neurons_per_core": part, "cores": cores,
            "cores_packed": _ceil_div(n, capacity), "synmem_per_core": max(mems),
            "synmem_mean": sum(mems) / cores, "reason": ""}


def _sliced(layer: LayerShape, chip: ChipModel) -> dict:
    """Conv and input layers: width slices (power-of-two columns), channels halved if memory demands."""
    nmax, budget = chip.max_neurons_per_core, chip.synmem_units_per_core
    kp = layer.kernel_params or {}
    C, H, W = kp.get("out_chw", (1, 1, layer.n_neurons))  # a flat input layer is one row of neurons
    mem = (lambda c: conv_synmem(layer, c, chip)) if layer.kind == "conv" else (lambda c: 0)
    if mem(1) > budget:
        return _unmappable("synaptic memory", f"one output channel's kernel ({layer.fan_in} rows) needs "
                           f"{mem(1)} SynMem units, above the {budget} of a core")
    binding = "neurons"
    c = C
    while c > 1 and mem(c) > budget:
        c, binding = _ceil_div(c, 2), "synaptic memory"
    h = H
    while h > 1 and h * c > nmax:
        h = _ceil_div(h, 2)
    while c > 1 and h * c > nmax:
        c = _ceil_div(c, 2)
    w = 1 << (W.bit_length() - 1)  # largest power of two <= W
    while w > 1 and w * h * c > nmax:
        w //= 2
    cores = _ceil_div(W, w) * _ceil_div(H, h) * _ceil_div(C, c)
    # packed: as many channels as memory allows, then as many neurons as the core holds
    c_pk = _largest(lambda k: mem(k) <= budget, C)
    if c_pk >= C:
        packed = _ceil_div(layer.n_neurons, nmax)
    else:
        packed = _ceil_div(C, c_pk) * _ceil_div(H * W * c_pk, nmax)
    return {"fits": True, "binding": binding, "capacity": min(nmax, H * W * c_pk),
            "neurons_per_core": min(w, W) * h * c, "cores": cores, "cores_packed": packed,
            "synmem_per_core": mem(c), "synmem_mean": float(mem(c)), "reason": ""}


def _unmappable(binding: str, reason: str) -> dict:
    return {"fits": False, "binding": binding, "capacity": 0, "neurons_per_core": 0, "cores": None,
            "cores_packed": None, "synmem_per_core": None, "synmem_mean": None, "reason": reason}


# ---------------------------------------------------------------------------------------------------
# Estimate
# ---------------------------------------------------------------------------------------------------

def estimate(shapes, chip: ChipModel | None = None) -> dict:
    """Per-layer and total cores and chips of ``shapes`` (LayerShapes) on ``chip`` (default ChipModel()).

    Per layer: ``neurons``, ``fan_in``, ``synapses``, ``weight_bits``; ``capacity`` (most neurons a core
    can hold under all limits) and ``binding`` ("neurons", "synaptic memory" or "fan-in": the limit that
    sets it); ``cores`` and ``neurons_per_core`` (the compiler-like split), ``cores_packed`` (lower
    bound), ``synmem_per_core`` (max) and ``synmem_mean`` (SynMem units); ``fits`` and ``reason`` (why a
    layer cannot be mapped at all). ``totals``: neurons, synapses, cores, cores_packed, chips,
    chips_packed (None when a layer does not fit), fits, unmappable (layer names).
    """
    chip = chip or ChipModel()
    layers = []
    for s in shapes:
        if not isinstance(s, LayerShape):
            raise QsnnError(f"estimate() takes LayerShapes, got {type(s).__name__}")
        if chip.max_fan_in is not None and s.fan_in > chip.max_fan_in:
            r = _unmappable("fan-in", f"fan-in {s.fan_in} exceeds the chip model's max_fan_in {chip.max_fan_in}")
        elif s.kind == "dense":
            r = _dense(s, chip)
        else:
            r = _sliced(s, chip)
        layers.append({"name": s.name, "kind": s.kind, "neurons": s.n_neurons, "fan_in": s.fan_in,
                       "synapses": s.n_synapses, "weight_bits": s.weight_bits, **r})
    fits = all(r["fits"] for r in layers)
    cores = sum(r["cores"] for r in layers) if fits else None
    packed = sum(r["cores_packed"] for r in layers) if fits else None
    totals = {
        "neurons": sum(r["neurons"] for r in layers), "synapses": sum(r["synapses"] for r in layers),
        "cores": cores, "cores_packed": packed,
        "chips": _ceil_div(cores, chip.cores_per_chip) if fits else None,
        "chips_packed": _ceil_div(packed, chip.cores_per_chip) if fits else None,
        "cores_per_chip": chip.cores_per_chip, "fits": fits,
        "unmappable": [r["name"] for r in layers if not r["fits"]],
    }
    return {"chip": asdict(chip), "layers": layers, "totals": totals}


def format_table(result: dict) -> str:
    """``estimate``'s ``result`` as a markdown table (per layer: neurons, fan-in, synapses, bits, the binding
    limit, neurons and SynMem units per core, cores), with totals and the chip model's name."""
    dash = "-"
    rows = ["| layer | kind | neurons | fan-in | synapses | bits | binding | capacity/core | neurons/core "
            "| SynMem/core | cores | cores packed |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in result["layers"]:
        if r["fits"]:
            rows.append(f"| {r['name']} | {r['kind']} | {r['neurons']} | {r['fan_in']} | {r['synapses']} "
                        f"| {r['weight_bits']} | {r['binding']} | {r['capacity']} | {r['neurons_per_core']} "
                        f"| {r['synmem_per_core']} | {r['cores']} | {r['cores_packed']} |")
        else:
            rows.append(f"| {r['name']} | {r['kind']} | {r['neurons']} | {r['fan_in']} | {r['synapses']} "
                        f"| {r['weight_bits']} | {r['binding']} | does not fit: {r['reason']} | {dash} | {dash} "
                        f"| {dash} | {dash} |")
    t = result["totals"]
    if t["fits"]:
        total = (f"**Total: {t['cores']} cores ({t['chips']} chip(s) of {t['cores_per_chip']} cores); "
                 f"packed lower bound {t['cores_packed']} cores ({t['chips_packed']} chip(s)).**")
    else:
        total = f"**Does not fit: {', '.join(t['unmappable'])}.**"
    return "\n".join(rows + ["", total, f"Chip model: {result['chip']['name']} (estimate, not a compile)."])


# ---------------------------------------------------------------------------------------------------
# Calibration: PilotNet-LIF from lava-dl
# ---------------------------------------------------------------------------------------------------

# Cores per layer as printed by the Lava-Loihi compiler ("Per core distribution") in lava-dl
# tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb, commit dad9dfad9d81744bc8f21876f1e4bac46beeda8d.
PILOTNET_LIF_LOG_CORES = {"input": 13, "conv1": 25, "conv2": 13, "conv3": 3, "conv4": 3, "conv5": 2,
                          "fc1": 12, "fc2": 1, "fc3": 1, "fc4": 1}
PILOTNET_LIF_LOG_TOTAL = 74


def pilotnet_lif_shapes(weight_bits: int = 8) -> list:
    """lava-dl's PilotNet-LIF (Loihi 2 tutorial) as LayerShapes: input neurons, 5 conv, 4 dense.

    Shapes as printed by netx in lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/run.ipynb and
    benchmark.ipynb (``print(net)``, W x H x C): Input 200x66x3; Conv 99x32x24, 49x15x36, 24x7x48 (3x3,
    stride 2, no padding); 22x4x64 (3x3, stride 1 in W and 2 in H, padding 0 in W and 1 in H);
    20x2x64 (3x3, stride 1); Dense 100, 50, 10, 1. The input layer is a LIF population driven by its
    bias (the image), which is why it takes cores. Weight bits are not readable here (the network.net
    file is binary): ``weight_bits`` (default 8) is an assumption.
    """
    layers = [LayerShape("input", "input", 3 * 66 * 200, 0, 0, 0, {"out_chw": (3, 66, 200)})]
    spec = [("conv1", 24, 2, 0), ("conv2", 36, 2, 0), ("conv3", 48, 2, 0), ("conv4", 64, (2, 1), (1, 0)),
            ("conv5", 64, 1, 0)]
    chw = (3, 66, 200)
    for name, c_out, stride, pad in spec:
        s = conv_shape(name, chw, c_out, 3, stride, pad, weight_bits)
        layers.append(s)
        chw = s.kernel_params["out_chw"]
    n_in = int(np.prod(chw))  # 64 * 2 * 20 = 2560
    for name, n in (("fc1", 100), ("fc2", 50), ("fc3", 10), ("fc4", 1)):
        layers.append(LayerShape(name, "dense", n, n_in, n * n_in, weight_bits))
        n_in = n
    return layers


if __name__ == "__main__":  # python -m qsnn_lava.deployment.resources: the PilotNet calibration
    res = estimate(pilotnet_lif_shapes())
    print(format_table(res))
    print(f"\nLava-Loihi compiler log: {PILOTNET_LIF_LOG_TOTAL} cores.")
