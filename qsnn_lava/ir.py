"""The deployable network as plain dataclasses, and its versioned HDF5 file format.

Every representation converts to and from this: checkpoints (converters.checkpoint), Lava process
graphs (converters.lava_graph), and every backend runs it (deploy.backends). Fields keep Lava's names
and integer units, so a reader can hold the IR next to Lava's source; ``qsnn_lava.dynamics`` says
what they compute.

A network is a list of layers in order; a layer is one CUBA LIF population fed by a main synapse
population (Dense or Conv) from the layer before it, plus optional *skip* synapses from any earlier
layer or the input (residual connections: their inputs add up in the neuron's current). Every
population is flat; a conv layer's neurons are its [C, H, W] map in torch's row-major order, which is
also how a Dense after a conv sees them (flatten is free). Pooling is a Conv with fixed weights
(``sum_pool``). Time is zero-delay: a layer integrates at step t what its sources emitted at step t.

A layer may also carry a *recurrent* synapse: a Dense [n, n] from its OWN output back into itself, with a
one-step delay. Layer i at step t integrates its feed-forward sources at step t plus ``W_rec @ s_i(t-1)``
(shifted by the recurrent weight_exp), and ``s_i(-1) = 0``: every sample starts with no recurrent input.
A recurrent synapse from a later layer back to an earlier one is not part of the IR: Lava's pipeline
delivers a later layer's spikes to an earlier layer two or more steps late, so no synapse delay can give
it a one-step delay (docs/integer-semantics.md, "Recurrent synapses").

File layout (``/`` attributes ``format = "qsnn-lava-ir"``, ``version``)::

    /attrs: format, version, timesteps, input_shape, meta (JSON), input_bits (optional, default 1)
    /layers/<i>/attrs: name, weight_bits
    /layers/<i>/synapse/attrs: type ("dense"), weight_exp;   dataset weight (int16 [n_out, n_in])
                       or type ("conv"), weight_exp, in_shape, stride, padding, groups;
                                dataset weight (int16 [C_out, C_in / groups, kh, kw])
    /layers/<i>/skips/<j>/attrs: source (a layer name or "input");  /layers/<i>/skips/<j>/synapse as above
    /layers/<i>/recurrent/attrs: type ("dense"), weight_exp;  dataset weight (int16 [n, n])   (optional, v3)
    /layers/<i>/neuron/attrs:  type ("lif"), vth, du, dv, bias_exp;  dataset bias_mant (int16 [n])
                               or type ("qmem"), the same plus mem_bits, mem_shift (CPU only)

Version 1 files (no conv, no skips) and version 2 files (no recurrent synapses) are still read. ``input_bits``
is the message bits of the network input: 1 (0/1 spikes; files without the attribute read as 1) or 2..8 (direct
input: graded spikes whose payload is a b-bit unsigned intensity; the first synapses compute ``a = W @ q``,
Lava's ``num_message_bits = b``).

Files are untrusted: ``Network.load`` checks every attribute's type and range and every dataset's dtype,
shape and stored bytes against the others and against one Loihi 2 chip (``MAX_NEURONS`` per layer,
``MAX_ELEMENTS`` per array, ``MAX_TIMESTEPS``) and this machine's memory before reading it (``H5Reader``),
so a small file that declares a huge network is refused by field instead of allocated.

Readers and writers are a registry keyed by the ``type`` attribute, so new primitives stay flat.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import QsnnError, about
from .io import atomic_write

FORMAT = "qsnn-lava-ir"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

# Register widths of Loihi 2 as exposed by Lava (lava/proc/lif/models.py, lava/utils/weightutils.py).
VTH_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa
DECAY_MAX = 4095  # 12-bit du, dv
BIAS_MANT_RANGE = (-(1 << 12), (1 << 12) - 1)  # 13-bit signed
BIAS_EXP_RANGE = (0, 7)  # 3-bit unsigned
WEIGHT_EXP_RANGE = (-8, 7)
INT32_SAFE = (1 << 31) - (1 << 23)  # |a << 6| must stay below this for Lava's int32 current update
CONV_A_LIMIT = (1 << 23) - 1  # Lava's Conv wraps its output to 24 bits (proc/conv/models.py)
INPUT = "input"  # the source name of the network input, for skip synapses
INPUT_BITS_RANGE = (1, 8)  # message bits of the network input: 1 = 0/1 spikes, 2..8 = direct (graded) input
MAX_DELAY = 62  # a skip's extra delay in steps: DelaySparse's per-synapse delay register (lava-semantics.md)

# What a file or config may declare, checked before anything of that size is allocated.
MAX_NEURONS = 128 * 8192  # one Loihi 2 chip: 128 cores x 8192 neurons; per layer (and input) at most
MAX_ELEMENTS = 1 << 28  # per weight or bias array (a chip holds about 1.2e8 synapses)
MAX_TIMESTEPS = 1 << 16


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


def whole_number(value, what: str, lo: int, hi: int) -> int:
    """``value`` as an int when it is a whole number in [lo, hi] (a Python or numpy integer, or a float
    with no fraction), else QsnnError naming ``what``: never a bool, string, NaN, Inf or fraction.

    Example:
        >>> whole_number(8.0, "timesteps", 1, MAX_TIMESTEPS)
        8
        >>> whole_number(float("nan"), "theta", 0, 10)
        Traceback (most recent call last):
        ...
        qsnn_lava.errors.QsnnError: theta = nan must be a whole number in [0, 10]
    """
    v = value[()] if isinstance(value, np.ndarray) and value.shape == () else value
    whole = not isinstance(v, (bool, np.bool_)) and (
        isinstance(v, (int, np.integer))
        or (isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer()))
    if whole and lo <= int(v) <= hi:
        return int(v)
    shown = " ".join(repr(v.item() if isinstance(v, np.generic) else v).split())  # one line, also for arrays
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise QsnnError(f"{what} = {shown} must be a whole number in [{lo}, {hi}]")


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


def integer_weight(weight, kind: str, layout: str) -> np.ndarray:
    """``weight`` as int64 with the layout's number of axes; refuses fractional values (not mantissas)."""
    w = np.asarray(weight)
    ndim = layout.count(",") + 1
    if w.ndim != ndim:
        raise QsnnError(f"{kind} weight must be {ndim}-D {layout}, got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.integer) and not np.all(np.mod(w, 1) == 0):
        raise QsnnError(f"{kind} weight must hold integers (mantissas), found fractional values")
    return w.astype(np.int64)


def shift(x: int, e: int) -> int:
    """The weight exponent on an integer: ``x << e``, or ``x >> -e`` (floor) when e < 0, as Lava does."""
    return x << e if e >= 0 else x >> -e


def max_input(syn, max_in: int = 1) -> int:
    """The largest |a| one step of a synapse population can send to any of its neurons (after weight_exp):
    all positive or all negative weights of a neuron's row (per output channel for a conv) active, each input
    at its largest value ``max_in`` (1 for 0/1 spikes, 2^b - 1 for b-bit direct input)."""
    pos, neg = syn.row_sums()
    return max(abs(shift(int(pos.max(initial=0)) * max_in, syn.weight_exp)),
               abs(shift(int(neg.min(initial=0)) * max_in, syn.weight_exp)))


@dataclass
class Dense:
    """All-to-all synapses: ``a_i = (sum_j weight[i, j] * s_j)`` shifted by ``weight_exp`` (floor).

    ``weight``: integer mantissas [n_out, n_in] (any array-like of whole numbers; fractions are refused);
    ``weight_exp``: the per-population exponent, applied to the sum (``<<``, or ``>>`` when negative).

    Example:
        >>> import qsnn_lava as ql
        >>> syn = ql.Dense([[1, -2]], weight_exp=1)
        >>> syn.n_in, syn.n_out, syn.out_shape
        (2, 1, (1,))
        >>> [str(v) for v in ql.Dense([[300, -1]]).violations("layer 0")]
        ['layer 0: weight = 300 is outside the Loihi 2 range [-128, 127]; retrain with fewer weight bits ...']
    """

    weight: np.ndarray
    weight_exp: int = 0
    type = "dense"

    def __post_init__(self):
        self.weight = integer_weight(self.weight, "dense", "[n_out, n_in]")
        self.weight_exp = int(self.weight_exp)

    @property
    def n_in(self) -> int:
        """Number of inputs: the weight matrix's columns."""
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        """Number of outputs (neurons fed): the weight matrix's rows."""
        return self.weight.shape[0]

    @property
    def out_shape(self) -> tuple:
        """The outputs' shape, ``(n_out,)``."""
        return (self.n_out,)

    def row_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per output neuron: the sum of its positive and of its negative weights (before weight_exp)."""
        return np.clip(self.weight, 0, None).sum(axis=1), np.clip(self.weight, None, 0).sum(axis=1)

    def violations(self, where: str, max_in: int = 1) -> list:
        """The Violations of this synapse population at ``where`` (e.g. "layer 0 (fc1)"); [] when Loihi 2 holds it.

        Checked: every weight within ``weight_limits`` (8-bit magnitude, or 8 bits + sign with mixed signs),
        weight_exp in [-8, 7], and the worst-case input of one neuron (the sum of its row's |weight| times the
        largest input ``max_in``, shifted by weight_exp) << 6 below 2^31 - 2^23, so Lava's int32 current update
        cannot overflow."""
        lo, hi = weight_limits(self.weight)
        out = check_range(where, "weight", self.weight, lo, hi,
                          "retrain with fewer weight bits (mixed-sign odd mantissas hold at most 7 bits "
                          "plus sign on Loihi 2)")
        out += check_range(where, "weight_exp", self.weight_exp, *WEIGHT_EXP_RANGE, "rescale weights and vth")
        worst = shift(int(np.abs(self.weight).sum(axis=1).max()) * max_in if self.weight.size else 0,
                      self.weight_exp)
        out += check_range(where, "worst-case synaptic input << 6", worst << 6, 0, INT32_SAFE - 1,
                           "Lava's 32-bit current update would overflow; lower weight_exp or the weights")
        return out

    def to_h5(self, g) -> None:
        """Write into h5py group ``g``: attributes ``type`` ("dense") and ``weight_exp``, dataset ``weight`` (int16
        [n_out, n_in])."""
        g.attrs["type"] = self.type
        g.attrs["weight_exp"] = self.weight_exp
        g.create_dataset("weight", data=self.weight.astype(np.int16))

    @classmethod
    def from_h5(cls, g, r: "H5Reader") -> "Dense":
        """The Dense stored in h5py group ``g``, read through the checked reader ``r``: ``weight`` [n_out, n_in]
        (at most ``MAX_ELEMENTS``) and ``weight_exp`` in [-31, 31]; QsnnError naming the field otherwise.
        Register widths are left to ``violations``."""
        n_out, n_in = r.shape(g, "weight", (2,))
        r.count(g, "weight [n_out, n_in]", n_out * n_in, MAX_ELEMENTS)
        return cls(weight=r.ints(g, "weight", (n_out, n_in)), weight_exp=r.int(g, "weight_exp", *_EXP))


@dataclass
class Conv:
    """2-D convolution synapses (torch's cross-correlation) from a [C, H, W] map to [C_out, H_out, W_out].

    ``a[o, y, x] = sum_{c, i, j} weight[o, c, i, j] * s[g*C_in/groups + c, y*sy - py + i, x*sx - px + j]``
    over the group g of o, zero outside the map, then shifted by ``weight_exp``. Lava's CPU Conv model
    ignores weight_exp and wraps its output to 24 bits, so the converter keeps weight_exp = 0 and the
    check below requires every sum to fit 24 bits; then both are exact.

    ``weight``: integer mantissas [C_out, C_in / groups, kh, kw]; ``in_shape``: the input map (C, H, W);
    ``stride`` and ``padding``: (H, W) pairs or one number for both; padding must be smaller than the kernel.

    Example:
        >>> import qsnn_lava as ql, numpy as np
        >>> conv = ql.Conv(np.ones((4, 2, 3, 3), int), in_shape=(2, 8, 8), stride=2, padding=1)
        >>> conv.kernel, conv.out_shape, conv.n_in, conv.n_out
        ((3, 3), (4, 4, 4), 128, 64)
    """

    weight: np.ndarray
    in_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    weight_exp: int = 0
    type = "conv"

    def __post_init__(self):
        self.weight = integer_weight(self.weight, "conv", "[C_out, C_in/groups, kh, kw]")
        self.in_shape = tuple(int(d) for d in self.in_shape)
        self.stride, self.padding = _pair(self.stride), _pair(self.padding)
        self.groups, self.weight_exp = int(self.groups), int(self.weight_exp)
        if len(self.in_shape) != 3:
            raise QsnnError(f"conv in_shape must be (C, H, W), got {self.in_shape}")
        c_in, g = self.in_shape[0], self.groups
        if g < 1 or c_in % g or self.weight.shape[0] % g or self.weight.shape[1] * g != c_in:
            raise QsnnError(f"conv weight {self.weight.shape} does not fit {c_in} input channels in {g} groups")
        if min(self.stride) < 1 or min(self.padding) < 0 or min(self.out_shape) < 1:
            raise QsnnError(f"conv stride {self.stride} / padding {self.padding} do not fit input {self.in_shape}")
        if any(p >= k for p, k in zip(self.padding, self.kernel)):
            raise QsnnError(f"conv padding {self.padding} must be smaller than the kernel {self.kernel} "
                            "(more padding only adds outputs that see nothing but zeros)")

    @property
    def kernel(self) -> tuple:
        """The kernel's spatial size ``(kh, kw)``."""
        return tuple(self.weight.shape[2:])

    @property
    def out_shape(self) -> tuple:
        """The output map ``(C_out, H_out, W_out)``, with ``H_out = (H + 2 * padding[0] - kh) // stride[0] + 1``
        (likewise W_out)."""
        (_, h, w), (kh, kw) = self.in_shape, self.kernel
        return (self.weight.shape[0], (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    @property
    def n_in(self) -> int:
        """Number of inputs: C * H * W of ``in_shape``."""
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        """Number of outputs (neurons fed): C_out * H_out * W_out."""
        return int(np.prod(self.out_shape))

    def row_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per output channel: sum of positive and of negative kernel weights (a bound for every neuron)."""
        w = self.weight.reshape(self.weight.shape[0], -1)
        return np.clip(w, 0, None).sum(axis=1), np.clip(w, None, 0).sum(axis=1)

    def violations(self, where: str, max_in: int = 1) -> list:
        """The Violations of this synapse population at ``where``; [] when Lava's Conv computes it exactly.

        Checked: weights within ``weight_limits`` but at most [-128, 127] with mixed signs (the even 9-bit values
        need the exponent, which Lava's CPU Conv ignores), weight_exp = 0, and the largest per-channel sum of
        positive (or negative) weights, times the largest input ``max_in``, within 2^23 - 1 (Lava's Conv wraps
        its output to 24 bits)."""
        lo, hi = weight_limits(self.weight)
        if lo == -256:  # even 9-bit values need the exponent, which Lava's CPU Conv ignores
            lo, hi = -128, 127
        out = check_range(where, "weight", self.weight, lo, hi,
                          "retrain with fewer weight bits (mixed-sign conv mantissas hold at most 7 bits plus sign)")
        out += check_range(where, "weight_exp", self.weight_exp, 0, 0,
                           "Lava's CPU Conv model ignores weight_exp; fold the scale into vth and the bias")
        pos, neg = self.row_sums()
        worst = int(max(pos.max(), -neg.min())) * max_in if self.weight.size else 0
        out += check_range(where, "worst-case conv sum", worst, 0, CONV_A_LIMIT,
                           "Lava's Conv wraps its output to 24 bits; lower the weights")
        return out

    def to_h5(self, g) -> None:
        """Write into h5py group ``g``: attributes ``type`` ("conv"), ``weight_exp``, ``in_shape`` (C, H, W),
        ``stride`` and ``padding`` ((H, W) pairs), ``groups``; dataset ``weight`` (int16
        [C_out, C_in / groups, kh, kw])."""
        g.attrs["type"] = self.type
        g.attrs["weight_exp"] = self.weight_exp
        for k in ("in_shape", "stride", "padding"):
            g.attrs[k] = np.asarray(getattr(self, k), np.int64)
        g.attrs["groups"] = self.groups
        g.create_dataset("weight", data=self.weight.astype(np.int16))

    @classmethod
    def from_h5(cls, g, r: "H5Reader") -> "Conv":
        """The Conv stored in h5py group ``g``, read through the checked reader ``r``: ``in_shape`` of 3 sizes with
        C * H * W at most ``MAX_NEURONS``, a 4-D ``weight`` of at most ``MAX_ELEMENTS``, ``stride`` (>= 1) and
        ``padding`` (>= 0) of one or two numbers, ``groups``, ``weight_exp`` in [-31, 31]; QsnnError naming the
        field otherwise. Register widths are left to ``violations``."""
        in_shape = r.ints_attr(g, "in_shape", (3,), 1, MAX_NEURONS)
        r.count(g, "in_shape (C*H*W)", int(np.prod(in_shape)), MAX_NEURONS)
        shape = r.shape(g, "weight", (4,))
        r.count(g, "weight [C_out, C_in/groups, kh, kw]", int(np.prod(shape)), MAX_ELEMENTS)
        return cls(weight=r.ints(g, "weight", shape), in_shape=in_shape,
                   stride=r.ints_attr(g, "stride", (1, 2), 1, MAX_NEURONS),
                   padding=r.ints_attr(g, "padding", (1, 2), 0, MAX_NEURONS),
                   groups=r.int(g, "groups", 1, MAX_NEURONS), weight_exp=r.int(g, "weight_exp", *_EXP))


def sum_pool(in_shape: tuple, kernel: int, weight: int = 1) -> Conv:
    """Sum pooling (kernel = stride, no padding) as a depthwise Conv whose every weight is ``weight``."""
    c = int(in_shape[0])
    return Conv(weight=np.full((c, 1, kernel, kernel), int(weight)), in_shape=in_shape,
                stride=(kernel, kernel), groups=c)


def _pair(x) -> tuple:
    x = np.atleast_1d(np.asarray(x, np.int64)).tolist()
    return (int(x[0]), int(x[0])) if len(x) == 1 else (int(x[0]), int(x[1]))


@dataclass
class LIF:
    """CUBA LIF population (see qsnn_lava.dynamics for the exact per-step arithmetic).

    ``n`` neurons; ``vth``: threshold mantissa (a neuron fires when v > vth << 6); ``du``, ``dv``: 12-bit
    decays of current and voltage (du = 4095 keeps no current, dv = 0 keeps all voltage); ``bias_mant``:
    per-neuron bias mantissas (None: 0; a scalar is broadcast to [n]), added to v each step as
    ``bias_mant << bias_exp`` internal units.

    Example:
        >>> import qsnn_lava as ql
        >>> ql.LIF(3, vth=10, du=4095, dv=2048, bias_mant=[0, 1, -1], bias_exp=6).bias_mant.tolist()
        [0, 1, -1]
        >>> [str(v) for v in ql.LIF(2, vth=1 << 17, du=4095, dv=0).violations("layer 0")]
        ['layer 0: vth = 131072 is outside the Loihi 2 range [0, 131071]; scale weights down or the threshold']
    """

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
        """The Violations of this population's registers at ``where``; [] when Loihi 2 holds them: vth in
        [0, 2^17 - 1], du and dv in [0, 4095], every bias_mant in [-4096, 4095], bias_exp in [0, 7]."""
        return (check_range(where, "vth", self.vth, 0, VTH_MAX, "scale weights down or the threshold")
                + check_range(where, "du", self.du, 0, DECAY_MAX, "du is a 12-bit decay (4095 = no current memory)")
                + check_range(where, "dv", self.dv, 0, DECAY_MAX, "dv is a 12-bit decay")
                + check_range(where, "bias_mant", self.bias_mant, *BIAS_MANT_RANGE, "use a larger bias_exp")
                + check_range(where, "bias_exp", self.bias_exp, *BIAS_EXP_RANGE, "bias_exp is 3-bit unsigned"))

    def to_h5(self, g) -> None:
        """Write into h5py group ``g``: attributes ``type`` ("lif"), ``n``, ``vth``, ``du``, ``dv``, ``bias_exp``;
        dataset ``bias_mant`` (int16 [n])."""
        g.attrs["type"] = self.type
        for k in ("n", "vth", "du", "dv", "bias_exp"):
            g.attrs[k] = getattr(self, k)
        g.create_dataset("bias_mant", data=self.bias_mant.astype(np.int16))

    @classmethod
    def from_h5(cls, g, r: "H5Reader") -> "LIF":
        """The LIF stored in h5py group ``g``, read through the checked reader ``r``: ``n`` in [1, MAX_NEURONS],
        ``vth``, ``du``, ``dv`` as int32 values, ``bias_exp`` in [-31, 31], ``bias_mant`` [n]; QsnnError naming
        the field otherwise. Register widths are left to ``violations``."""
        return cls(**cls._h5_fields(g, r))

    @staticmethod
    def _h5_fields(g, r: "H5Reader") -> dict:
        n = r.int(g, "n", 1, MAX_NEURONS)
        kw = {k: r.int(g, k, *_REGISTER) for k in ("vth", "du", "dv")}
        return dict(n=n, bias_exp=r.int(g, "bias_exp", *_EXP), bias_mant=r.ints(g, "bias_mant", (n,)), **kw)


@dataclass
class QMem(LIF):
    """The qmem neuron: a CUBA LIF whose voltage is stored in ``mem_bits`` bits at bit ``mem_shift``
    after every step (qsnn_lava.dynamics.store_membrane). Not native to Loihi 2: CPU (Lava) only.

    ``mem_bits``: 2..8; ``mem_shift``: 0..23, the bit position of the stored bits in v (the converter uses
    ``dynamics.qmem_shift(vth, mem_bits)``, the finest position whose top level reaches the threshold).

    Example:
        >>> import qsnn_lava as ql
        >>> from qsnn_lava.dynamics import qmem_shift
        >>> qmem_shift(10, 3)  # (2^2 - 1) << 8 = 768 >= 10 << 6 = 640
        8
        >>> ql.QMem(4, vth=10, du=4095, dv=2048, mem_bits=3, mem_shift=8).violations("layer 0")
        []
        >>> [v.field for v in ql.QMem(4, vth=10, du=4095, dv=2048, mem_bits=9).violations("layer 0")]
        ['mem_bits']
    """

    mem_bits: int = 4
    mem_shift: int = 0
    type = "qmem"

    def __post_init__(self):
        super().__post_init__()
        self.mem_bits, self.mem_shift = int(self.mem_bits), int(self.mem_shift)

    def violations(self, where: str) -> list:
        """The LIF's Violations plus the stored membrane's: mem_bits in [2, 8], mem_shift in [0, 23] (the stored
        bits must lie inside the 24-bit v)."""
        return (super().violations(where)
                + check_range(where, "mem_bits", self.mem_bits, 2, 8, "the stored membrane holds 2 to 8 bits")
                + check_range(where, "mem_shift", self.mem_shift, 0, 23, "the stored bits must lie in 24-bit v"))

    def to_h5(self, g) -> None:
        """Write the LIF's fields (with ``type`` "qmem") and the attributes ``mem_bits`` and ``mem_shift`` into
        h5py group ``g``."""
        super().to_h5(g)
        g.attrs["mem_bits"], g.attrs["mem_shift"] = self.mem_bits, self.mem_shift

    @classmethod
    def from_h5(cls, g, r: "H5Reader") -> "QMem":
        """The QMem stored in h5py group ``g``: the LIF's fields plus ``mem_bits`` in [0, 64] and ``mem_shift`` in
        [0, 63] (their legal ranges are checked by ``violations``)."""
        return cls(mem_bits=r.int(g, "mem_bits", 0, 64), mem_shift=r.int(g, "mem_shift", 0, 63),
                   **cls._h5_fields(g, r))


@dataclass
class Readout:
    """A non-spiking readout population: CUBA LIF dynamics without fire or reset, whose output is its voltage v
    (an integer per step, internal units) instead of spikes. NIR's LI, CubaLI and I are such populations.

    ``n``, ``du``, ``dv``, ``bias_mant``, ``bias_exp``: as ``LIF``. ``vth`` is not a field: the reference never
    fires (``dynamics.NO_FIRE_VTH``), and Lava runs the population as a LIF at its largest threshold
    ``VTH_MAX``, which the DRC requires the static bound to prove v never reaches (``Network.violations``).
    A readout is the network's last layer, and nothing reads its (absent) spikes.

    Example:
        >>> import qsnn_lava as ql, numpy as np
        >>> out = ql.Layer("out", ql.Dense([[3, -1]]), ql.Readout(1, du=4095, dv=2048))
        >>> net = ql.Network((2,), [out], timesteps=3)
        >>> ql.simulate(net, np.ones((3, 1, 2), np.uint8)).voltages["out"].ravel().tolist()  # v = v/2 + 2*64
        [128, 192, 224]
    """

    n: int
    du: int
    dv: int
    bias_mant: np.ndarray | None = None
    bias_exp: int = 0
    type = "readout"
    vth = VTH_MAX  # what Lava's LIF runs it at (never reached: the DRC's static bound proves it)

    def __post_init__(self):
        self.n, self.du, self.dv, self.bias_exp = int(self.n), int(self.du), int(self.dv), int(self.bias_exp)
        b = np.zeros(self.n, np.int64) if self.bias_mant is None else np.asarray(self.bias_mant)
        self.bias_mant = np.broadcast_to(b, (self.n,)).astype(np.int64).copy()

    def violations(self, where: str) -> list:
        """The register Violations of du, dv and the bias, as a LIF's (the threshold's is the network's: the
        static bound of v, ``Network.violations``)."""
        return LIF(self.n, VTH_MAX, self.du, self.dv, self.bias_mant, self.bias_exp).violations(where)

    def to_h5(self, g) -> None:
        """Write into h5py group ``g``: attributes ``type`` ("readout"), ``n``, ``du``, ``dv``, ``bias_exp``;
        dataset ``bias_mant`` (int16 [n])."""
        g.attrs["type"] = self.type
        for k in ("n", "du", "dv", "bias_exp"):
            g.attrs[k] = getattr(self, k)
        g.create_dataset("bias_mant", data=self.bias_mant.astype(np.int16))

    @classmethod
    def from_h5(cls, g, r: "H5Reader") -> "Readout":
        """The Readout stored in h5py group ``g``: the LIF's fields but ``vth`` (checked the same way)."""
        n = r.int(g, "n", 1, MAX_NEURONS)
        return cls(n, du=r.int(g, "du", *_REGISTER), dv=r.int(g, "dv", *_REGISTER),
                   bias_mant=r.ints(g, "bias_mant", (n,)), bias_exp=r.int(g, "bias_exp", *_EXP))


SYNAPSES = {Dense.type: Dense, Conv.type: Conv}
NEURONS = {LIF.type: LIF, QMem.type: QMem, Readout.type: Readout}


@dataclass
class Skip:
    """A synapse population from an earlier layer (or ``INPUT``) into a layer's neurons (residuals).

    ``source``: the name of an earlier layer, or "input"; ``synapse``: a Dense or Conv whose n_in is the
    source's size. Its input adds to the layer's main synaptic input in the same (zero-delay) step; the
    Lava backend adds the synaptic delay that makes it so (at most ``MAX_DELAY`` steps).

    Example:
        >>> import qsnn_lava as ql
        >>> a = ql.Layer("a", ql.Dense([[1, 1]]), ql.LIF(1, vth=0, du=4095, dv=4095))
        >>> b = ql.Layer("b", ql.Dense([[2]]), ql.LIF(1, vth=2, du=4095, dv=4095),
        ...              skips=[ql.Skip("input", ql.Dense([[1, 1]]))])
        >>> net = ql.Network((2,), [a, b], timesteps=2)
        >>> [src for src, _ in net.sources(1)], net.depths()
        (['a', 'input'], [1, 2])
        >>> ql.simulate(net, [[[1, 0]], [[0, 0]]]).spikes[-1].ravel().tolist()  # 2 + 1 > 2: fires
        [1, 0]
    """

    source: str
    synapse: object


@dataclass
class Layer:
    """One layer: a CUBA LIF population fed by a main synapse population and optional skips.

    ``name``: unique in the network ("input" is reserved); ``synapse``: a Dense or Conv from the previous
    layer (the input for the first layer); ``neuron``: a LIF or QMem with ``synapse.n_out`` neurons;
    ``weight_bits``: the bit width the weights were trained at (informative); ``skips``: Skip synapses from
    earlier layers or the input; ``recurrent``: None, or a Dense [n, n] from this layer's own spikes back into
    it, delivered one step later (module docstring).

    Example:
        >>> import qsnn_lava as ql
        >>> layer = ql.Layer("fc1", ql.Dense([[1, 2, 3], [0, -1, 1]]), ql.LIF(2, vth=3, du=4095, dv=2048))
        >>> layer.shape, layer.weight_bits, layer.skips, layer.recurrent
        ((2,), 8, [], None)
        >>> rnn = ql.Layer("r", ql.Dense([[4]]), ql.LIF(1, vth=3, du=4095, dv=4095), recurrent=ql.Dense([[4]]))
        >>> net = ql.Network((1,), [rnn], timesteps=4)
        >>> ql.simulate(net, [[[1]], [[0]], [[0]], [[0]]]).spikes[-1].ravel().tolist()  # it keeps itself firing
        [1, 1, 1, 1]
    """

    name: str
    synapse: object  # Dense or Conv, from the previous layer (or the input for the first layer)
    neuron: LIF
    weight_bits: int = 8  # bit width the weights were trained at (informative)
    skips: list = field(default_factory=list)
    recurrent: Dense | None = None  # from this layer's own spikes, one step later

    @property
    def shape(self) -> tuple:
        """The neurons' shape: (n,) after a Dense, (C, H, W) after a Conv."""
        return self.synapse.out_shape


@dataclass
class Network:
    """A spiking network (feed-forward with skips; a layer may feed itself back); every layer's output is binary
    spikes (a readout's is its voltage), the input 0/1 spikes or b-bit graded values (``input_bits``), all
    time-major.

    ``input_shape``: one sample's input, (n_in,) or (C, H, W); ``layers``: Layers in order; ``timesteps``:
    time steps T per sample; ``meta``: JSON-serialisable facts about its origin (quantizer, bits, source);
    ``input_bits``: message bits of the input, 1 for 0/1 spikes, 2..8 for direct (graded) input whose values
    are unsigned b-bit integers (``input_max`` = 2^b - 1).

    Example:
        >>> import qsnn_lava as ql
        >>> out = ql.Layer("out", ql.Dense([[1, -2]], weight_exp=1), ql.LIF(1, vth=1, du=4095, dv=4095))
        >>> net = ql.Network((2,), [out], timesteps=3)
        >>> net.n_in, net.depths(), net.validate() is net
        (2, [1], True)
        >>> ql.simulate(net, [[[1, 0]], [[1, 1]], [[0, 1]]]).spikes[-1].ravel().tolist()  # a = 2, -2, -4
        [1, 0, 0]
    """

    input_shape: tuple
    layers: list
    timesteps: int
    meta: dict = field(default_factory=dict)
    input_bits: int = 1

    def __post_init__(self):
        self.input_shape = tuple(int(d) for d in self.input_shape)
        self.timesteps = int(self.timesteps)
        self.input_bits = int(self.input_bits)

    @property
    def input_max(self) -> int:
        """The largest input value: 1 for 0/1 spikes, 2^b - 1 for b-bit direct input."""
        return (1 << self.input_bits) - 1

    def source_max(self, src: str) -> int:
        """The largest value source ``src`` sends: ``input_max`` for the network input, 1 for a layer's spikes."""
        return self.input_max if src == INPUT else 1

    @property
    def n_in(self) -> int:
        """Number of inputs: the product of ``input_shape``."""
        return int(np.prod(self.input_shape))

    def sources(self, index: int) -> list:
        """[(source name, synapse)] feeding layer ``index``: the main synapse first, then the skips."""
        main = INPUT if index == 0 else self.layers[index - 1].name
        return [(main, self.layers[index].synapse)] + [(k.source, k.synapse) for k in self.layers[index].skips]

    def populations(self, index: int) -> list:
        """[(source name, synapse)] of every synapse population into layer ``index``: ``sources(index)`` and then,
        when the layer has one, its recurrent synapse (whose source is the layer itself, one step earlier).
        What a population costs or adds to the neuron's input is summed over this list."""
        layer = self.layers[index]
        return self.sources(index) + ([(layer.name, layer.recurrent)] if layer.recurrent is not None else [])

    def check_structure(self) -> None:
        """Shapes and counts that must hold for the network to mean anything (raises QsnnError)."""
        if not self.layers:
            raise QsnnError("network has no layers")
        if not 1 <= self.timesteps <= MAX_TIMESTEPS:
            raise QsnnError(f"timesteps = {self.timesteps} must be in [1, {MAX_TIMESTEPS}]")
        if not 1 <= self.n_in <= MAX_NEURONS or min(self.input_shape, default=0) < 1:
            raise QsnnError(f"input_shape = {self.input_shape} must hold 1 to {MAX_NEURONS} inputs (one "
                            "Loihi 2 chip)")
        if not INPUT_BITS_RANGE[0] <= self.input_bits <= INPUT_BITS_RANGE[1]:
            raise QsnnError(f"input_bits = {self.input_bits} must be in [{INPUT_BITS_RANGE[0]}, {INPUT_BITS_RANGE[1]}] "
                            "(1: 0/1 spikes; 2..8: direct graded input)")
        shapes = {INPUT: self.input_shape}
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            if not 1 <= layer.neuron.n <= MAX_NEURONS:
                raise QsnnError(f"{where}: n = {layer.neuron.n} neurons; a layer holds 1 to {MAX_NEURONS} "
                                "(one Loihi 2 chip: 128 cores x 8192 neurons)")
            if layer.name in shapes:
                raise QsnnError(f"{where}: the name '{layer.name}' is used twice (or is reserved)")
            for j, (src, syn) in enumerate(self.sources(i)):
                what = "synapse" if j == 0 else f"skip {j - 1} (from '{src}')"
                if src not in shapes:
                    raise QsnnError(f"{where}: {what} comes from '{src}', which is not an earlier layer or "
                                    f"'{INPUT}'")
                n_src = int(np.prod(shapes[src]))
                if syn.n_in != n_src:
                    raise QsnnError(f"{where}: {what} expects {syn.n_in} inputs but '{src}' has {n_src} neurons")
                if isinstance(syn, Conv) and len(shapes[src]) == 3 and tuple(shapes[src]) != syn.in_shape:
                    raise QsnnError(f"{where}: {what} expects a {syn.in_shape} map but '{src}' is {shapes[src]}")
                if syn.n_out != layer.neuron.n:
                    raise QsnnError(f"{where}: {what} has {syn.n_out} outputs but the neuron "
                                    f"population has {layer.neuron.n}")
            if layer.neuron.type == Readout.type:
                if i != len(self.layers) - 1:
                    raise QsnnError(f"{where}: a readout (non-spiking) layer must be the last layer: the layers "
                                    "after it would read spikes it never sends")
                if layer.recurrent is not None:
                    raise QsnnError(f"{where}: a readout (non-spiking) layer cannot have a recurrent synapse: it "
                                    "sends no spikes to feed back")
            rec = layer.recurrent
            if rec is not None:
                if not isinstance(rec, Dense):
                    raise QsnnError(f"{where}: the recurrent synapse is a {getattr(rec, 'type', type(rec).__name__)}"
                                    "; a recurrent synapse is a Dense [n, n] from the layer's own spikes")
                if rec.weight.shape != (layer.neuron.n, layer.neuron.n):
                    raise QsnnError(f"{where}: the recurrent weight has shape {rec.weight.shape}; it must be "
                                    f"[n, n] = {(layer.neuron.n, layer.neuron.n)} (from the layer to itself)")
            shapes[layer.name] = layer.shape

    def depths(self) -> list[int]:
        """Each layer's depth: synapse hops on its deepest path from the input (the input has depth 0,
        a layer one more than its deepest source). Lava delays every synapse by one step, so a synapse
        from source s into layer L needs ``depth(L) - 1 - depth(s)`` extra steps of delay."""
        d = {INPUT: 0}
        for i, layer in enumerate(self.layers):
            d[layer.name] = 1 + max(d[src] for src, _ in self.sources(i))
        return [d[layer.name] for layer in self.layers]

    def violations(self) -> list:
        """Every register-width violation of every layer (the design-rule check's core)."""
        self.check_structure()
        out = []
        depth = dict(zip([INPUT] + [layer.name for layer in self.layers], [0] + self.depths()))
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            for j, (src, syn) in enumerate(self.sources(i)):
                at = where if j == 0 else f"{where} skip {j - 1}"
                out += syn.violations(at, self.source_max(src))
                out += check_range(at, f"delay from '{src}' (steps)", depth[layer.name] - 1 - depth[src], 0,
                                   MAX_DELAY, "Loihi synapses delay at most 62 steps; let the skip bridge fewer "
                                   "layers")
            if layer.recurrent is not None:
                out += layer.recurrent.violations(f"{where} recurrent")
            out += layer.neuron.violations(where)
            out += _summed_input_violations(where, [(src, syn, self.source_max(src)) for src, syn in self.populations(i)])
            if layer.neuron.type == Readout.type:
                out += _readout_violations(where, self, layer.name)
        return out

    def validate(self) -> "Network":
        """Return ``self`` when every register fits Loihi 2 (``violations()`` is empty); else QsnnError naming the
        first violation and how many more there are."""
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
                f.attrs["input_bits"] = self.input_bits
                for i, layer in enumerate(self.layers):
                    g = f.create_group(f"layers/{i}")
                    g.attrs["name"] = layer.name
                    g.attrs["weight_bits"] = layer.weight_bits
                    layer.synapse.to_h5(g.create_group("synapse"))
                    layer.neuron.to_h5(g.create_group("neuron"))
                    for j, skip in enumerate(layer.skips):
                        k = g.create_group(f"skips/{j}")
                        k.attrs["source"] = skip.source
                        skip.synapse.to_h5(k.create_group("synapse"))
                    if layer.recurrent is not None:
                        layer.recurrent.to_h5(g.create_group("recurrent"))

    @classmethod
    def load(cls, path, validate: bool = True) -> "Network":
        """Read an IR file; with ``validate=False`` register widths are left to the caller's DRC.

        The file is untrusted: every attribute's type and range and every dataset's dtype and shape is
        checked against the others and against ``MAX_NEURONS``, ``MAX_ELEMENTS``, ``MAX_TIMESTEPS`` and
        this machine's memory before the dataset is read, so a small file that declares a huge network
        is refused (QsnnError naming the field) instead of being allocated.
        """
        import h5py

        path = Path(path)
        if not path.is_file():
            if path.exists():
                raise QsnnError(f"'{path}' is not an IR file (it is a folder or a device); pass an IR written "
                                "by `qsnn-lava convert`")
            raise QsnnError(f"IR file '{path}' not found; create one with `qsnn-lava convert CKPT -o {path}`")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise QsnnError(f"'{path}' is not an HDF5 file ({e.__class__.__name__}); "
                            "pass an IR written by `qsnn-lava convert`") from None
        with about(path):
            try:
                with f:
                    net = _read_network(f, H5Reader(_RECONVERT))
            except (OSError, RuntimeError, KeyError) as e:  # h5py on a damaged file
                raise QsnnError(f"the HDF5 file is damaged ({e.__class__.__name__}: "
                                f"{str(e).splitlines()[0][:100] if str(e) else ''}); {_RECONVERT}") from None
            return net.validate() if validate else (net.check_structure() or net)


_RECONVERT = "the file is corrupt or was not written by qsnn-lava: re-run `qsnn-lava convert`"
_REGISTER = (-(1 << 31), (1 << 31) - 1)  # what a loaded register field may hold (the DRC checks its width)
_EXP = (-31, 31)  # exponents: a shift of at most 31 bits
MAX_ATTR_ELEMENTS = 1 << 20  # an attribute (meta JSON included) is small
_COPIES = 8  # int64 copies of a loaded array that checking and simulating it may hold at once


def _read_network(f, r: "H5Reader") -> Network:
    """The network of an open IR file, every declared size checked before it is read (QsnnError)."""
    fmt = r.str(f, "format", missing=None)
    if fmt != FORMAT:
        raise QsnnError(f"HDF5 but not a qsnn-lava IR (missing format='{FORMAT}'); a lava-dl netx file "
                        "needs `qsnn-lava import-netx`")
    version = r.int(f, "version", 0, 1 << 20)
    if version not in READABLE_VERSIONS:
        raise QsnnError(f"IR format version {version}; this qsnn-lava reads versions {READABLE_VERSIONS}. "
                        "Re-run `qsnn-lava convert` on the checkpoint")
    timesteps = r.int(f, "timesteps", 1, MAX_TIMESTEPS)
    input_shape = r.ints_attr(f, "input_shape", (1, 2, 3), 1, MAX_NEURONS)
    r.count(f, "input_shape (inputs)", int(np.prod(input_shape)), MAX_NEURONS)
    input_bits = r.int(f, "input_bits", *INPUT_BITS_RANGE) if r.raw(f, "input_bits", None) is not None else 1
    meta_text = r.str(f, "meta")
    try:
        meta = json.loads(meta_text)
    except (ValueError, RecursionError):
        raise QsnnError(f"attribute 'meta' of / is not valid JSON; {_RECONVERT}") from None
    if not isinstance(meta, dict):
        raise QsnnError(f"attribute 'meta' of / must be a JSON object, not {type(meta).__name__}; {_RECONVERT}")
    layers = []
    for i, g in enumerate(r.numbered(f, "layers", at_least=1)):
        syn, neu = r.group(g, "synapse"), r.group(g, "neuron")
        layers.append(Layer(
            name=r.str(g, "name"),
            synapse=r.registered(SYNAPSES, syn).from_h5(syn, r),
            neuron=r.registered(NEURONS, neu).from_h5(neu, r),
            weight_bits=r.int(g, "weight_bits", 0, 64),
            skips=[_read_skip(k, r) for k in (r.numbered(g, "skips") if "skips" in g else [])],
            recurrent=_read_recurrent(g, r, version),
        ))
    return Network(input_shape=input_shape, layers=layers, timesteps=timesteps, meta=meta, input_bits=input_bits)


def _read_recurrent(g, r: "H5Reader", version: int):
    """The recurrent Dense of layer group ``g`` (version 3 on), or None when it has none. Its declared shape is
    checked before reading like any synapse's; that it is [n, n] is ``check_structure``'s."""
    if "recurrent" not in g:
        return None
    if version < 3:
        raise r.fail(g, f"has a 'recurrent' group, which IR version {version} does not have")
    rec = r.group(g, "recurrent")
    kind = r.str(rec, "type")
    if kind != Dense.type:
        raise r.fail(rec, f"type '{kind[:40]}' is not supported for a recurrent synapse (known: dense)")
    return Dense.from_h5(rec, r)


def _read_skip(g, r: "H5Reader") -> Skip:
    syn = r.group(g, "synapse")
    return Skip(r.str(g, "source"), r.registered(SYNAPSES, syn).from_h5(syn, r))


class H5Reader:
    """Checked reads from an untrusted HDF5 file (an IR here, a netx file in converters.netx): each
    attribute's type, shape and range and each dataset's dtype, shape and stored size are checked before
    the value is read, and the datasets read so far must fit this machine's memory. Failures are
    QsnnErrors naming the object and field, ending in ``fix``."""

    def __init__(self, fix: str):
        self.fix = fix
        self.elements = 0  # elements of the datasets read so far
        self.budget = _memory_budget() // _COPIES

    def fail(self, g, what: str) -> QsnnError:
        """The QsnnError ``"<g.name>: <what>; <fix>"`` (returned, for the caller to raise)."""
        return QsnnError(f"{g.name}: {what}; {self.fix}")

    def raw(self, g, key: str, missing="required"):
        """Attribute ``key`` of ``g`` as stored, after checking that it is small (at most ``MAX_ATTR_ELEMENTS``
        elements) and of a plain type: bool, integer, float, bytes or text. A missing attribute raises QsnnError
        when ``missing`` is "required", else returns ``missing``."""
        import h5py

        if key not in g.attrs:
            if missing == "required":
                raise self.fail(g, f"attribute '{key}' is missing")
            return missing
        aid = g.attrs.get_id(key)
        size = int(np.prod(aid.shape)) if aid.shape is not None else 0
        if size > MAX_ATTR_ELEMENTS or aid.dtype.itemsize > MAX_ATTR_ELEMENTS:
            raise self.fail(g, f"attribute '{key}' declares {size} elements")
        if aid.dtype.kind not in "biufSUO" or h5py.check_vlen_dtype(aid.dtype) not in (None, str, bytes):
            raise self.fail(g, f"attribute '{key}' has type {aid.dtype}")
        return g.attrs[key]

    def int(self, g, key: str, lo: int, hi: int) -> int:
        """Attribute ``key`` of ``g`` as an int: a whole number in [lo, hi] (``whole_number``), else QsnnError."""
        value = self.raw(g, key)
        try:
            return whole_number(value, f"attribute '{key}'", lo, hi)
        except QsnnError as e:
            raise self.fail(g, str(e)) from None

    def ints_attr(self, g, key: str, lengths: tuple, lo: int, hi: int) -> tuple:
        """Attribute ``key`` of ``g`` as a tuple of ints: one number or a 1-D array whose length is one of
        ``lengths``, each a whole number in [lo, hi]; else QsnnError."""
        v = np.atleast_1d(self.raw(g, key))
        if v.ndim != 1 or len(v) not in lengths:
            raise self.fail(g, f"attribute '{key}' has shape {v.shape}; it holds "
                               f"{' or '.join(map(str, lengths))} numbers")
        try:
            return tuple(whole_number(x, f"attribute '{key}'", lo, hi) for x in v)
        except QsnnError as e:
            raise self.fail(g, str(e)) from None

    def str(self, g, key: str, missing="required"):
        """Attribute ``key`` of ``g`` as text (bytes are decoded as UTF-8); QsnnError when it is anything else. A
        missing attribute raises QsnnError when ``missing`` is "required", else returns ``missing``."""
        v = self.raw(g, key, missing)
        if v is missing and missing != "required":
            return v
        if isinstance(v, bytes):
            try:
                v = v.decode()
            except UnicodeDecodeError:
                v = None
        if not isinstance(v, str):
            raise self.fail(g, f"attribute '{key}' must be a text string")
        return v

    def count(self, g, what: str, n: int, hi: int) -> None:
        """Refuse (QsnnError on ``g``) a declared element count ``n`` outside [1, hi]; ``what`` names the count."""
        if not 1 <= n <= hi:
            raise self.fail(g, f"{what} declares {n} elements; at most {hi} are allowed")

    def group(self, g, key: str):
        """Subgroup ``key`` of ``g``; QsnnError when it is missing or not a group."""
        import h5py

        sub = g.get(key) if key in g else None
        if not isinstance(sub, h5py.Group):
            raise self.fail(g, f"group '{key}' is missing" if sub is None else f"'{key}' is not a group")
        return sub

    def numbered(self, g, key: str, at_least: int = 0) -> list:
        """The subgroups "0", "1", ... of group ``key``, in order; any other name or a gap is refused."""
        parent = self.group(g, key)
        names = set(parent.keys())
        expected = [str(i) for i in range(len(names))]
        if len(names) < at_least:
            raise self.fail(parent, f"holds {len(names)} groups; at least {at_least} expected")
        missing = [n for n in expected if n not in names]
        if missing:
            odd = sorted(names - set(expected))[0]
            raise self.fail(parent, f"holds a group named '{odd[:40]}' but none named '{missing[0]}'; its "
                                    "groups must be numbered 0, 1, ... without gaps")
        return [self.group(parent, n) for n in expected]

    def dataset(self, g, key: str, kinds: str = "iu"):
        """Dataset ``key`` of ``g`` (not read), refused unless its dtype is of one of numpy's ``kinds``."""
        import h5py

        d = g.get(key) if key in g else None
        if not isinstance(d, h5py.Dataset):
            raise self.fail(g, f"dataset '{key}' is missing" if d is None else f"'{key}' is not a dataset")
        if d.dtype.kind not in kinds or d.dtype.itemsize > 8:
            what = "integers" if kinds == "iu" else "numbers"
            raise self.fail(g, f"dataset '{key}' has dtype {d.dtype}; it must hold {what}")
        return d

    def shape(self, g, key: str, ndims: tuple = (1,), kinds: str = "iu") -> tuple:
        """The declared shape of dataset ``key`` (nothing is read): ``ndims`` axes, none empty."""
        d = self.dataset(g, key, kinds)
        if d.shape is None or len(d.shape) not in ndims or min(d.shape, default=1) < 1:
            raise self.fail(g, f"dataset '{key}' has shape {d.shape}; it must have "
                               f"{' or '.join(map(str, ndims))} axes and hold at least one value")
        return tuple(int(n) for n in d.shape)

    def read(self, g, key: str, kinds: str = "iu") -> np.ndarray:
        """Dataset ``key``, after checking its size (``MAX_ELEMENTS``), that it stores all of its data (a
        contiguous dataset with fewer bytes on disk is truncated or crafted) and the memory budget."""
        d = self.dataset(g, key, kinds)
        size = int(np.prod(d.shape)) if d.shape is not None else 0
        if size > MAX_ELEMENTS:
            raise self.fail(g, f"dataset '{key}' declares {size} elements; at most {MAX_ELEMENTS} are allowed")
        if d.chunks is None and d.id.get_storage_size() < size * d.dtype.itemsize:
            raise self.fail(g, f"dataset '{key}' declares {size} elements but stores only "
                               f"{d.id.get_storage_size()} bytes")
        self.elements += size
        if self.elements * 8 > self.budget:
            raise self.fail(g, f"dataset '{key}': the network's arrays ({self.elements} numbers) do not fit "
                               "this machine's memory")
        return np.asarray(d[()])

    def ints(self, g, key: str, shape: tuple) -> np.ndarray:
        """Integer dataset ``key`` as int64, refused unless its shape is exactly ``shape``."""
        d = self.dataset(g, key)
        if tuple(d.shape or ()) != tuple(shape):
            raise self.fail(g, f"dataset '{key}' has shape {d.shape}, but the attributes declare {tuple(shape)}")
        return self.read(g, key).astype(np.int64)

    def registered(self, registry: dict, g):
        """The class that reads group ``g``: ``registry[type]`` for its ``type`` attribute (``SYNAPSES`` or
        ``NEURONS``); QsnnError listing the known types when there is none."""
        kind = self.str(g, "type")
        if kind not in registry:
            raise QsnnError(f"{g.name}: type '{kind[:40]}' is not supported (known: {', '.join(sorted(registry))})")
        return registry[kind]


def _memory_budget() -> int:
    """Bytes this process may allocate: physical memory, or less under an address-space limit."""
    import os
    import resource

    try:
        budget = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        budget = 1 << 34
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return budget if soft == resource.RLIM_INFINITY else min(budget, soft)


def _readout_violations(where: str, net: Network, name: str) -> list:
    """A readout runs on Lava as a LIF at the largest threshold ``VTH_MAX``: the static bound of |v| over a
    sample (``bounds.static_bounds``) must stay below ``VTH_MAX << 6`` so that it provably never fires."""
    from .bounds import static_bounds

    limit = (VTH_MAX << 6) - 1
    return check_range(where, "static |v| bound of a readout", min(static_bounds(net)[name]["v_bound"], 1 << 40), 0,
                       limit, "Lava runs a readout as a LIF at the largest threshold, which v must provably never "
                       "reach; lower the weights, the bias or the time constant")


def _summed_input_violations(where: str, sources: list) -> list:
    """With several synapse populations into one LIF, their summed worst case must fit the int32 update.
    ``sources``: (name, synapse, largest input value) per population."""
    if len(sources) < 2:
        return []
    worst = sum(max_input(syn, m) for _, syn, m in sources)
    return check_range(where, "worst-case summed input << 6", worst << 6, 0, INT32_SAFE - 1,
                       "Lava's 32-bit current update would overflow; lower the weights")
