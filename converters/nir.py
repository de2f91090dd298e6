"""NIR graphs (the Neuromorphic Intermediate Representation, the ``nir`` package 1.0) <-> the qsnn-lava IR,
for feed-forward networks: ``import_nir`` (float ODE graph -> Loihi integers, with a report of what the
conversion cost) and ``export_nir`` (our integer network as a NIR graph that imports back bit-exactly).

The float dynamics NIR's neurons stand for, at the time step ``dt`` the user gives (NIR has none), are the
same for the importer, its float simulator (``simulate_float``) and the exporter. Per step t, with ``x`` the
summed input of a population (its Affine/Conv outputs, biases included), ``k = dt / tau`` (forward Euler,
``method="euler"``) or ``k = 1 - exp(-dt / tau)`` (the exact exponential step of each equation with its
input held over the step, ``method="exp"``):

    u = (1 - k_syn) u + gain * x + u_bias          the synaptic current, in voltage units per step
    v = (1 - k_mem) v + u + leak                   the membrane; the current is updated first
    s = v > v_threshold;  v = v_reset where s

    IF       k_syn = 1, k_mem = 0, gain = dt r                    (dv/dt = R I)
    LIF      k_syn = 1, k_mem = k(tau), gain = k_mem r, leak = k_mem v_leak
    CubaLIF  k_syn = k(tau_syn), k_mem = k(tau_mem), gain = k_mem r k_syn w_in, leak = k_mem v_leak
    LI -> IF/LIF   an LI whose only consumer is one IF or LIF is that neuron's synaptic current:
             k_syn = k(tau_LI), gain = gain_neuron k_syn r_LI, u_bias = gain_neuron k_syn v_leak_LI

    LI / CubaLI / I feeding the Output (a readout: no fire, its output is v):
             LI: k_syn = 1, k_mem = k(tau), gain = k_mem r, leak = k_mem v_leak; CubaLI as CubaLIF;
             I: k_syn = 1, k_mem = 0, gain = dt r

This is Loihi 2's CUBA LIF step (``qsnn_lava.dynamics``) in floats: ``du + 1 = 4096 k_syn``,
``dv = 4096 k_mem``, the weights times ``gain`` become weight mantissas, ``v_threshold`` becomes ``vth``,
and ``leak`` (v_leak is a constant input to v) and biases become ``bias_mant << bias_exp``. docs/nir.md
has the formulas, the choice of ``weight_exp`` and what is exact.

Recurrence: a cycle of edges from a spiking population through linear nodes back into itself (or into
its LI current) is that population's recurrent synapse, with a one-step delay: the edge that closes the
cycle (a depth-first search from the Input finds it) carries its source node's output of step t - 1, zero
at t = 0. The float simulator does exactly that, and the IR's recurrent synapse (``ir.Layer.recurrent``,
one Dense [n, n]) means exactly that too. Any other cycle is refused (``REFUSED["recurrence"]``).

Linear nodes between two neuron populations (Affine, Linear, Scale, Conv1d/2d, SumPool2d, AvgPool2d,
Flatten, nested graphs) are composed into one synapse per source, exactly: a pool before a convolution
is fused into it when one convolution reproduces the two, otherwise the composition is unrolled into a
dense matrix. A population fed from several sources gets skip synapses (the IR's residuals).

What cannot be mapped is refused by name (``REFUSED``, ``EXPORT_REFUSED``), with one line naming the node;
what can only be approximated is refused unless ``approximate=True``, and then listed in the report.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from qsnn_lava.dynamics import ACT_SHIFT, DECAY_UNITY, UV_MAX, VTH_SHIFT
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import (BIAS_EXP_RANGE, BIAS_MANT_RANGE, DECAY_MAX, INPUT, LIF, MAX_ELEMENTS, MAX_NEURONS,
                          MAX_TIMESTEPS, WEIGHT_EXP_RANGE, Conv, Dense, Layer, Network, Readout, Skip,
                          whole_number)

# What the importer refuses, and why (used in the error messages).
REFUSED = {
    "LI": "a non-spiking leaky integrator inside the graph; it is imported as a readout when it feeds the Output "
          "directly, or as the synaptic current of the one IF or LIF it feeds, nowhere else (layers read spikes)",
    "CubaLI": "a non-spiking readout inside the graph; it is imported only when it feeds the Output directly "
              "(the IR's layers read spikes)",
    "I": "a non-spiking integrator inside the graph; it is imported only when it feeds the Output directly "
         "(the IR's layers read spikes)",
    "Threshold": "a threshold without a membrane; an IF with r = 1/dt and v_threshold is the same neuron",
    "Delay": "the IR has no synaptic delays (Lava's delays only even out skips)",
    "recurrence": "a cycle of edges other than a population's own recurrent synapse (a path of linear nodes "
                  "from a spiking population back into itself, or into its LI current); a loop from a later "
                  "population back to an earlier one has no one-step Lava graph (docs/integer-semantics.md)",
    "bias on a recurrent synapse": "the recurrent path's bias reaches the population from the second step on "
                                   "(its input at step t is the path's output at t - 1, zero at t = 0); "
                                   "approximate adds it as a constant bias from the first step",
    "readout without neurons": "the IR's output is the spikes of its last LIF population, and this Output is "
                               "fed through a linear node (a non-spiking readout)",
    "parallel populations": "neuron populations neither of which feeds the other; the IR is a chain of layers "
                            "(each feeds the next) with skips between them",
    "several inputs": "the IR has one input population",
    "several outputs": "the IR's output is its last layer",
    "unconnected population": "a neuron population whose spikes reach no Output",
    "v_reset": "Loihi 2 resets v to 0; approximate shifts v by v_reset (threshold and leak move with it), which "
               "is exact except that the neuron then starts at v_reset instead of 0",
    "subtractive reset": "Loihi 2's CUBA LIF resets v to 0; approximate resets to 0",
    "time constants that differ within a layer": "Loihi 2 has one du and one dv per population; approximate "
                                                 "uses their mean",
    "bias into a synaptic filter": "Loihi 2 adds its bias to v, not to the current; with tau_syn > dt a constant "
                                   "input current ramps up through the filter, approximate adds its steady "
                                   "state to v from the first step",
    "Euler step longer than tau": "dt > tau makes the forward-Euler decay overshoot; lower dt or use method='exp'",
    "AvgPool2d with padding": "its divisor at the borders is ambiguous (count_include_pad); use SumPool2d and "
                              "a Scale",
    "'same' padding with stride > 1 or an even kernel": "it needs asymmetric padding, which the IR's Conv has not",
    "padding as large as the kernel": "outputs that see only padding; the IR's Conv needs padding < kernel",
    "negative threshold": "Loihi 2's vth is unsigned",
    "zero and nonzero thresholds in one layer": "per-neuron thresholds are folded into the weights, which a zero "
                                                "threshold cannot scale",
}
APPROXIMABLE = ("v_reset", "subtractive reset", "time constants that differ within a layer",
                "bias into a synaptic filter", "bias on a recurrent synapse")
EXPORT_REFUSED = {
    "qmem": "NIR has no neuron that stores its voltage in a few bits (the qmem neuron is CPU-only)",
    "IF bias that varies within a conv channel": "an IF's bias travels as the conv's bias, one per channel",
    "bias on a neuron with a current filter and no leak": "it is exported as LI -> IF, where a bias would be "
                                                          "filtered by the LI",
    "conv fed by a flat layer": "NIR has no reshape node to turn a flat population into a (C, H, W) map",
    "readout with a current and no leak": "NIR's CubaLI needs a finite tau_mem (its input gain is dt / tau_mem)",
    "recurrent synapse on a conv map": "the IR's recurrent synapse is a Dense, and NIR has no reshape node to "
                                       "feed an Affine's flat output back into a (C, H, W) population",
}
NIR_TYPES = ("Input", "Output", "NIRGraph", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "Flatten",
             "SumPool2d", "AvgPool2d", "IF", "LIF", "CubaLIF", "LI", "CubaLI", "I", "Threshold", "Delay")
NEURONS = ("IF", "LIF", "CubaLIF")
READOUTS = ("LI", "CubaLI", "I")  # non-spiking: imported as ir.Readout when they feed the Output directly
LINEAR = ("Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten")
METHODS = ("euler", "exp")
DEFAULT_DT = 1e-3  # seconds per step of an exported graph
HEADROOM_BITS = 3  # without a better bound, vth << 6 stays 3 bits below the 24-bit limit of u and v
CALIBRATION_LIMIT = UV_MAX >> 1  # calibrated peaks of |u| and |v| stay below 2^22 (one bit of margin)
MAX_UNROLLED = 1 << 24  # elements of a composed synapse unrolled into a dense matrix
EXPORT_FORMAT = "qsnn-lava"  # graph metadata "qsnn_format" of our exports (their integers are in metadata)
EXPORT_VERSION = 1
RECURRENT_SKIP = -2  # metadata qsnn_skip of a layer's recurrent synapse node (-1: the main one; 0, 1, ...: skips)
_FIX_FILE = "pass a .nir file written by nir.write (NIR 1.0)"


def _nir():
    try:
        import nir
    except ImportError:
        raise QsnnError("NIR graphs need the nir package: pip install 'qsnn-lava[nir]'") from None
    return nir


def _refuse(where: str, key: str, detail: str = "") -> QsnnError:
    fix = "; pass approximate=True to accept the approximation (the report lists it)" if key in APPROXIMABLE else ""
    return QsnnError(f"{where}: {key}{detail} is not supported: {REFUSED[key]}{fix}")


# ------------------------------------------------------------------------------------------ reading
def read_graph(path) -> "object":
    """A NIR graph file -> ``nir.NIRGraph``, refusing (QsnnError, one line) a missing file, a file that is
    not HDF5 or not NIR, a node of an unknown type (named) and arrays larger than the IR could hold,
    before nir reads anything."""
    import h5py

    from qsnn_lava.io import open_hdf5

    nir = _nir()
    path = Path(path)
    with open_hdf5(path, "NIR file", _FIX_FILE) as f:
        if not isinstance(f.get("node"), h5py.Group):
            raise QsnnError(f"'{path}' is HDF5 but not a NIR graph (no /node group); {_FIX_FILE}")
        _scan_node(f["node"], "graph", path, depth=0)
    try:
        return nir.read(path, type_check=False)  # shapes are checked here, node by node
    except Exception as e:  # nir raises whatever its parsers raise on a malformed node
        first = (str(e).splitlines() or [""])[0][:120]
        raise QsnnError(f"'{path}': nir cannot read the graph ({type(e).__name__}: {first}); {_FIX_FILE}") from None


def _scan_node(g, name: str, path, depth: int) -> None:
    """Check the stored types and array sizes of one NIR node group (and its subgraph) before reading."""
    import h5py

    if depth > 16:
        raise QsnnError(f"'{path}': node '{name}': subgraphs nested deeper than 16 levels")
    t = g.get("type")
    if not isinstance(t, h5py.Dataset) or t.dtype.kind not in "SOU" or (t.shape or ()) != ():
        raise QsnnError(f"'{path}': node '{name}' has no type string; {_FIX_FILE}")
    kind = t[()]
    kind = kind.decode(errors="replace") if isinstance(kind, bytes) else str(kind)
    if kind not in NIR_TYPES:
        raise QsnnError(f"'{path}': node '{name}' has type '{kind[:40]}', which is not a NIR 1.0 primitive "
                        f"(known: {', '.join(NIR_TYPES)})")
    for key, item in g.items():
        if isinstance(item, h5py.Dataset) and item.shape and int(np.prod(item.shape)) > MAX_ELEMENTS:
            raise QsnnError(f"'{path}': node '{name}': '{key}' declares {int(np.prod(item.shape))} elements; at "
                            f"most {MAX_ELEMENTS} are allowed")
    if kind == "NIRGraph":
        nodes = g.get("nodes")
        if not isinstance(nodes, h5py.Group):
            raise QsnnError(f"'{path}': subgraph '{name}' has no nodes group; {_FIX_FILE}")
        for key, sub in nodes.items():
            if not isinstance(sub, h5py.Group):
                raise QsnnError(f"'{path}': node '{key}' of '{name}' is not a group; {_FIX_FILE}")
            _scan_node(sub, key if name == "graph" else f"{name}.{key}", path, depth + 1)


def _graph_arg(graph_or_path):
    """(the NIRGraph, a name for messages) of a NIRGraph or a path to a .nir file."""
    nir = _nir()
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path, "the NIR graph"
    if isinstance(graph_or_path, (str, Path)):
        return read_graph(graph_or_path), f"'{graph_or_path}'"
    raise QsnnError(f"cannot import a {type(graph_or_path).__name__} as NIR; pass a nir.NIRGraph or a .nir path")


# ------------------------------------------------------------------------------------------ the graph
@dataclass
class _Graph:
    """A NIR graph with its subgraphs inlined (names joined by '.'), in topological order."""

    nodes: dict
    preds: dict
    succs: dict
    order: list
    input: str
    output: str
    passthrough: set  # nested graphs' Input/Output nodes: identities
    recurrent: dict = field(default_factory=dict)  # node -> [nodes whose output of step t - 1 it also adds]


def _flat_graph(graph) -> _Graph:
    nodes, edges, passthrough = {}, [], set()
    _inline(graph, "", nodes, edges, passthrough)
    nir = _nir()
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input) and k not in passthrough]
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output) and k not in passthrough]
    if len(inputs) != 1:
        raise _refuse("the NIR graph", "several inputs", f" ({len(inputs)} Input nodes)") if inputs else \
            QsnnError("the NIR graph has no Input node; add nir.Input(shape) before its first node")
    if len(outputs) != 1:
        raise _refuse("the NIR graph", "several outputs", f" ({len(outputs)} Output nodes)") if outputs else \
            QsnnError("the NIR graph has no Output node; add nir.Output(shape) after its last population")
    preds, succs = {k: [] for k in nodes}, {k: [] for k in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise QsnnError(f"the NIR graph's edge ('{a}', '{b}') names node '{end}', which it does not hold")
        if b in succs[a]:
            continue
        succs[a].append(b)
        preds[b].append(a)
    for name in nodes:
        if not preds[name] and name != inputs[0]:
            raise QsnnError(f"node '{name}' has no incoming edge; connect it to the graph's Input or remove it")
    recurrent = {}
    for a, b in _closing_edges(inputs[0], succs):  # each cycle's closing edge carries step t - 1
        succs[a].remove(b)
        preds[b].remove(a)
        recurrent.setdefault(b, []).append(a)
    return _Graph(nodes, preds, succs, _topological(nodes, preds, succs), inputs[0], outputs[0], passthrough,
                  recurrent)


def _closing_edges(start: str, succs: dict) -> list:
    """The edges (a, b) that close a cycle in a depth-first search from ``start`` (b is on the search's path
    when a is reached), successors in the graph's edge order. Without them the graph reachable from
    ``start`` is acyclic; a recurrent population is the first node of its loop the search meets, so its
    recurrent path ends in an edge into it."""
    state, out = {start: 1}, []  # 1: on the path, 2: done
    stack = [(start, iter(succs[start]))]
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            stack.pop()
        elif state.get(nxt) == 1:
            out.append((node, nxt))
        elif nxt not in state:
            state[nxt] = 1
            stack.append((nxt, iter(succs[nxt])))
    return out


def _inline(graph, prefix: str, nodes: dict, edges: list, passthrough: set) -> tuple:
    """Add ``graph``'s nodes under ``prefix`` (subgraphs recursively) and its edges; returns the names of
    its Input and Output nodes."""
    nir = _nir()
    ends = {}  # subgraph name -> (its Input, its Output)
    ins, outs = [], []
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            ends[full] = _inline(node, f"{full}.", nodes, edges, passthrough)
            continue
        nodes[full] = node
        if isinstance(node, nir.Input):
            ins.append(full)
        elif isinstance(node, nir.Output):
            outs.append(full)
        if prefix and isinstance(node, (nir.Input, nir.Output)):
            passthrough.add(full)
    if prefix and (len(ins) != 1 or len(outs) != 1):
        raise QsnnError(f"subgraph '{prefix[:-1]}' has {len(ins)} Input and {len(outs)} Output nodes; only "
                        "subgraphs with one of each are inlined")
    for a, b in graph.edges:
        a, b = f"{prefix}{a}", f"{prefix}{b}"
        edges.append((ends[a][1] if a in ends else a, ends[b][0] if b in ends else b))
    return (ins[0], outs[0]) if prefix else (None, None)


def _topological(nodes: dict, preds: dict, succs: dict) -> list:
    """Kahn's order, stable in the graph's node order; a cycle is refused (recurrence)."""
    missing = {k: len(preds[k]) for k in nodes}
    ready = [k for k in nodes if missing[k] == 0]
    order = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for s in succs[k]:
            missing[s] -= 1
            if missing[s] == 0:
                ready.append(s)
    if len(order) < len(nodes):
        stuck = next(k for k in nodes if missing[k] > 0)
        raise _refuse(f"node '{stuck}'", "recurrence")
    return order


def _kind(node) -> str:
    return type(node).__name__


# ------------------------------------------------------------------------------------------ linear maps
@dataclass
class _Map:
    """A linear map between flat populations plus a bias: ``y = W x + bias``. ``kind`` "dense": weight
    [n_out, n_in]; "conv": weight [C_out, C_in/groups, kh, kw] over the (C, H, W) map ``in_shape``;
    "diag": weight [n] (elementwise). Float64; ``nodes`` names the NIR nodes it was composed from."""

    kind: str
    weight: np.ndarray
    bias: np.ndarray
    in_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    nodes: tuple = ()

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_shape(self) -> tuple:
        if self.kind == "dense":
            return (self.weight.shape[0],)
        if self.kind == "diag":
            return tuple(self.in_shape)
        (_, h, w), (kh, kw) = self.in_shape[-3:], self.weight.shape[2:]
        return (self.weight.shape[0], (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    def lin(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part on flat inputs [N, n_in] (float64) -> [N, n_out]."""
        w = torch.from_numpy(self.weight)
        if self.kind == "dense":
            return x @ w.t()
        if self.kind == "diag":
            return x * w
        y = torch.nn.functional.conv2d(x.reshape(-1, *self.in_shape), w, stride=self.stride, padding=self.padding,
                                       groups=self.groups)
        return y.reshape(x.shape[0], -1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + torch.from_numpy(self.bias)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(int(n), np.float64)


def _whole(value, what: str, lo: int = 0, hi: int = MAX_NEURONS) -> int:
    """A whole number in [lo, hi] (a one-element array counts as its element), else QsnnError naming ``what``."""
    return whole_number(np.asarray(value).reshape(-1)[0] if np.size(value) == 1 else value, what, lo, hi)


def _pair(value, what: str, lo: int) -> tuple:
    """One or two whole numbers -> an (H, W) pair."""
    a = np.atleast_1d(np.asarray(value)).reshape(-1)
    if a.size not in (1, 2):
        raise QsnnError(f"{what} = {a.tolist()[:4]} must be one number or an (H, W) pair")
    a = np.repeat(a, 2) if a.size == 1 else a
    return tuple(_whole(v, what, lo) for v in a)


def _floats(where: str, node, name: str) -> np.ndarray:
    """Field ``name`` of a node as a float64 array, or QsnnError naming the node and field."""
    try:
        return np.asarray(getattr(node, name), np.float64)
    except (TypeError, ValueError, AttributeError):
        raise QsnnError(f"{where}: {name} must hold numbers") from None


def _array(where: str, node, name: str) -> np.ndarray:
    v = _floats(where, node, name)
    if not np.isfinite(v).all():
        raise QsnnError(f"{where}: {name} holds NaN or Inf")
    return v


def _node_map(where: str, node, in_shape: tuple):
    """The linear map of one NIR node fed by a population of shape ``in_shape``: (map or None for an
    identity, output shape)."""
    kind, n_in = _kind(node), int(np.prod(in_shape))
    if kind in ("Affine", "Linear"):
        w = _array(where, node, "weight")
        if w.ndim != 2:
            raise QsnnError(f"{where}: weight has shape {w.shape}; an {kind} is [n_out, n_in]")
        if w.shape[1] != n_in:
            raise QsnnError(f"{where}: weight {w.shape} takes {w.shape[1]} inputs but receives {n_in} "
                            f"(shape {in_shape}); the graph's shapes are inconsistent")
        bias = _array(where, node, "bias") if kind == "Affine" else _zeros(w.shape[0])
        if bias.size not in (1, w.shape[0]):
            raise QsnnError(f"{where}: bias has {bias.size} values for {w.shape[0]} outputs")
        return _Map("dense", w, np.broadcast_to(bias.reshape(-1), (w.shape[0],)).copy(), in_shape,
                    ), (w.shape[0],)
    if kind == "Scale":
        s = _array(where, node, "scale").reshape(-1)
        if s.size not in (1, n_in):
            raise QsnnError(f"{where}: scale has {s.size} values for {n_in} inputs; the graph's shapes are "
                            "inconsistent")
        return _Map("diag", np.broadcast_to(s, (n_in,)).copy(), _zeros(n_in), in_shape), in_shape
    if kind in ("Conv1d", "Conv2d"):
        m = _conv_map(where, node, in_shape, one_d=kind == "Conv1d")
        return m, (m.out_shape if kind == "Conv2d" else (m.out_shape[0], m.out_shape[2]))
    if kind in ("SumPool2d", "AvgPool2d"):
        m = _pool_map(where, node, in_shape, average=kind == "AvgPool2d")
        return m, m.out_shape
    if kind == "Flatten":
        return None, _flattened(where, node, in_shape)
    return None, in_shape  # Output, nested Input/Output


def _flattened(where: str, node, in_shape: tuple) -> tuple:
    """Flatten's output shape (any start_dim, end_dim); our populations are flat, so it moves nothing."""
    nd = len(in_shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start + nd if start < 0 else start, end + nd if end < 0 else end
    if not 0 <= start <= end < nd:
        return (int(np.prod(in_shape)),)  # a batch-style start_dim on an unbatched shape: all of it
    return tuple(in_shape[:start]) + (int(np.prod(in_shape[start:end + 1])),) + tuple(in_shape[end + 1:])


def _conv_map(where: str, node, in_shape: tuple, one_d: bool) -> _Map:
    """Conv1d ((C, N) maps run as (C, 1, N)) or Conv2d as a conv map: dilation unrolled into the kernel
    (zeros between taps), 'valid'/'same' resolved to symmetric padding, the bias repeated per position."""
    w = _array(where, node, "weight")
    if one_d:
        if len(in_shape) != 2 or w.ndim != 3:
            raise QsnnError(f"{where}: a Conv1d takes a (C, N) input and a [C_out, C_in, k] weight, got input "
                            f"{in_shape} and weight {w.shape}")
        shape3, w = (in_shape[0], 1, in_shape[1]), w[:, :, None, :]
        stride = (1, _whole(node.stride, f"{where}: stride", 1))
        dilation = (1, _whole(node.dilation, f"{where}: dilation", 1))
    else:
        if len(in_shape) != 3 or w.ndim != 4:
            raise QsnnError(f"{where}: a Conv2d takes a (C, H, W) input and a [C_out, C_in/groups, kh, kw] weight, "
                            f"got input {in_shape} and weight {w.shape}")
        shape3 = tuple(in_shape)
        stride, dilation = _pair(node.stride, f"{where}: stride", 1), _pair(node.dilation, f"{where}: dilation", 1)
    groups = _whole(node.groups, f"{where}: groups", 1)
    if w.shape[1] * groups != shape3[0] or w.shape[0] % groups:
        raise QsnnError(f"{where}: weight {tuple(w.shape)} in {groups} groups does not fit {shape3[0]} input "
                        "channels; the graph's shapes are inconsistent")
    if dilation != (1, 1):
        kh, kw = w.shape[2:]
        wd = np.zeros((*w.shape[:2], (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1))
        wd[:, :, ::dilation[0], ::dilation[1]] = w
        w = wd
    kernel = w.shape[2:]
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and stride == (1, 1) and all(k % 2 for k in kernel):
            padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        elif padding == "same":
            raise _refuse(where, "'same' padding with stride > 1 or an even kernel")
        else:
            raise QsnnError(f"{where}: padding '{padding[:20]}' must be 'same', 'valid' or numbers")
    else:
        padding = (0, _whole(padding, f"{where}: padding")) if one_d else _pair(padding, f"{where}: padding", 0)
    if any(p >= k for p, k in zip(padding, kernel)):
        raise _refuse(where, "padding as large as the kernel", f" (padding {padding}, kernel {tuple(kernel)})")
    declared = getattr(node, "input_shape", None)
    if declared is not None:
        declared = tuple(int(d) for d in np.atleast_1d(declared))
        if declared != tuple(shape3[2:] if one_d else shape3[1:]):
            raise QsnnError(f"{where}: input_shape {declared} does not match its input {in_shape}; the graph's "
                            "shapes are inconsistent")
    m = _Map("conv", w, _zeros(0), shape3, stride, padding, groups)
    if min(m.out_shape) < 1:
        raise QsnnError(f"{where}: kernel {tuple(kernel)} with padding {padding} does not fit input {in_shape}")
    bias = _array(where, node, "bias").reshape(-1)
    if bias.size not in (1, w.shape[0]):
        raise QsnnError(f"{where}: bias has {bias.size} values for {w.shape[0]} output channels")
    m.bias = np.repeat(np.broadcast_to(bias, (w.shape[0],)), m.n_out // w.shape[0]).astype(np.float64)
    return m


def _pool_map(where: str, node, in_shape: tuple, average: bool) -> _Map:
    """SumPool2d as a depthwise conv of ones; AvgPool2d the same divided by the window (no padding)."""
    if len(in_shape) != 3:
        raise QsnnError(f"{where}: pooling takes a (C, H, W) input, got {in_shape}")
    kernel = _pair(node.kernel_size, f"{where}: kernel_size", 1)
    stride = _pair(node.stride, f"{where}: stride", 1)
    padding = _pair(node.padding, f"{where}: padding", 0)
    if average and any(padding):
        raise _refuse(where, "AvgPool2d with padding")
    if any(p >= k for p, k in zip(padding, kernel)):
        raise _refuse(where, "padding as large as the kernel", f" (padding {padding}, kernel {kernel})")
    c = in_shape[0]
    w = np.full((c, 1, *kernel), 1.0 / (kernel[0] * kernel[1]) if average else 1.0)
    m = _Map("conv", w, _zeros(0), tuple(in_shape), stride, padding, c)
    if min(m.out_shape) < 1:
        raise QsnnError(f"{where}: pooling window {kernel} does not fit input {in_shape}")
    m.bias = _zeros(m.n_out)
    return m


def _check_unrolled(n_out: int, n_in: int, nodes: tuple) -> None:
    if n_out * n_in > MAX_UNROLLED:
        raise QsnnError(f"node '{nodes[-1] if nodes else '?'}': composing it with its neighbours needs a dense "
                        f"{n_out} x {n_in} matrix (more than {MAX_UNROLLED} elements); put a neuron population "
                        "between the linear nodes")


def _dense(m: _Map) -> _Map:
    """``m`` as a dense matrix (exact), refused when it would be too large."""
    if m.kind == "dense":
        return m
    _check_unrolled(m.n_out, m.n_in, m.nodes)
    if m.kind == "diag":
        w = np.diag(m.weight)
    else:
        eye = torch.eye(m.n_in, dtype=torch.float64)
        w = torch.cat([m.lin(eye[i:i + 1024]) for i in range(0, m.n_in, 1024)]).t().numpy()
    return _Map("dense", np.ascontiguousarray(w), m.bias.copy(), m.in_shape, nodes=m.nodes)


def _channel_values(s: np.ndarray, shape: tuple):
    """The per-channel values of a per-neuron array over a (C, H, W) map, or None if one varies in a channel."""
    if len(shape) != 3:
        return None
    per = s.reshape(shape[0], -1)
    return per[:, 0].copy() if np.all(per == per[:, :1]) else None


def _compose(first: _Map | None, second: _Map | None) -> _Map | None:
    """``second`` after ``first`` as one map (exact): y = W2 (W1 x + b1) + b2."""
    if first is None or second is None:
        return first if second is None else second
    nodes = first.nodes + second.nodes
    bias = second.lin(torch.from_numpy(first.bias)[None])[0].numpy() + second.bias
    if second.kind == "diag":
        if first.kind == "diag":
            return _Map("diag", first.weight * second.weight, bias, first.in_shape, nodes=nodes)
        if first.kind == "conv":
            per = _channel_values(second.weight, first.out_shape)
            if per is not None:
                return _Map("conv", first.weight * per[:, None, None, None], bias, first.in_shape, first.stride,
                            first.padding, first.groups, nodes)
        d = _dense(first)
        return _Map("dense", d.weight * second.weight[:, None], bias, first.in_shape, nodes=nodes)
    if first.kind == "diag":
        if second.kind == "conv":
            per = _channel_values(first.weight, second.in_shape)
            if per is not None:
                c_in = second.weight.shape[1]
                scale = per.reshape(second.groups, c_in)  # input channel g * c_in + c of group g
                w = second.weight.copy()
                for g in range(second.groups):
                    rows = slice(g * w.shape[0] // second.groups, (g + 1) * w.shape[0] // second.groups)
                    w[rows] *= scale[g][None, :, None, None]
                return _Map("conv", w, bias, second.in_shape, second.stride, second.padding, second.groups, nodes)
        d = _dense(second)
        return _Map("dense", d.weight * first.weight[None, :], bias, first.in_shape, nodes=nodes)
    if first.kind == "conv" and second.kind == "conv":
        fused = _fuse_convs(first, second)
        if fused is not None:
            fused.bias, fused.nodes = bias, nodes
            return fused
    if second.kind == "dense":  # rows of W2 through the transpose of the first map
        if first.kind == "dense":
            w = second.weight @ first.weight
        else:
            w = _rows_through_conv(second.weight, first)
        return _Map("dense", w, bias, first.in_shape, nodes=nodes)
    # a conv after a dense (or a conv that does not fuse): the columns of W1 through the conv
    d = _dense(first)
    _check_unrolled(second.n_out, d.n_in, nodes)
    w = second.lin(torch.from_numpy(np.ascontiguousarray(d.weight.T))).numpy().T
    return _Map("dense", np.ascontiguousarray(w), bias, first.in_shape, nodes=nodes)


def _rows_through_conv(rows: np.ndarray, conv: _Map) -> np.ndarray:
    """``rows @ C`` for the conv map C, as a transposed convolution of each row (exact, no unrolling)."""
    (c, h, w), (co, ho, wo), (kh, kw) = conv.in_shape, conv.out_shape, conv.weight.shape[2:]
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    extra = (h + 2 * ph - kh - (ho - 1) * sh, w + 2 * pw - kw - (wo - 1) * sw)
    out = torch.nn.functional.conv_transpose2d(torch.from_numpy(rows).reshape(-1, co, ho, wo),
                                               torch.from_numpy(conv.weight), stride=conv.stride,
                                               padding=conv.padding, output_padding=extra, groups=conv.groups)
    return out.reshape(rows.shape[0], c * h * w).numpy()


def _full_kernel(m: _Map) -> np.ndarray:
    """A grouped conv weight as the ungrouped [C_out, C_in, kh, kw] (zeros between groups)."""
    co, cg = m.weight.shape[:2]
    full = np.zeros((co, cg * m.groups, *m.weight.shape[2:]))
    for g in range(m.groups):
        rows = slice(g * co // m.groups, (g + 1) * co // m.groups)
        full[rows, g * cg:(g + 1) * cg] = m.weight[rows]
    return full


def _grouped(full: np.ndarray, candidates) -> tuple:
    """(weight, groups): ``full`` in the most groups among ``candidates`` whose off-group blocks are zero."""
    co, ci = full.shape[:2]
    for g in sorted(set(candidates), reverse=True):
        if g < 1 or co % g or ci % g:
            continue
        blocks = [full[k * co // g:(k + 1) * co // g, k * ci // g:(k + 1) * ci // g] for k in range(g)]
        if np.count_nonzero(full) == sum(np.count_nonzero(b) for b in blocks):
            return np.concatenate(blocks), g
    return full, 1


def _fuse_convs(a: _Map, b: _Map) -> _Map | None:
    """Conv ``b`` after conv ``a`` (a pool before a conv, a conv before a pool, ...) as one convolution:
    kernel ``K[o, c, i*s_a + j] = sum_m b[o, m, i] a[m, c, j]``, stride ``s_a s_b``, padding
    ``p_b s_a + p_a``; None unless it has b's output shape and reproduces b(a(x)) on random input (which
    also settles the borders, where b's zero padding meets a's windows)."""
    wa, wb = _full_kernel(a), _full_kernel(b)
    (ka_h, ka_w), (kb_h, kb_w) = wa.shape[2:], wb.shape[2:]
    (sa_h, sa_w), (sb_h, sb_w) = a.stride, b.stride
    k = np.zeros((wb.shape[0], wa.shape[1], (kb_h - 1) * sa_h + ka_h, (kb_w - 1) * sa_w + ka_w))
    for i in range(kb_h):
        for j in range(kb_w):
            tap = np.einsum("om,mchw->ochw", wb[:, :, i, j], wa)
            k[:, :, i * sa_h:i * sa_h + ka_h, j * sa_w:j * sa_w + ka_w] += tap
    padding = (b.padding[0] * sa_h + a.padding[0], b.padding[1] * sa_w + a.padding[1])
    if padding[0] >= k.shape[2] or padding[1] >= k.shape[3]:
        return None
    weight, groups = _grouped(k, (a.groups, b.groups, math.gcd(a.groups, b.groups)))
    fused = _Map("conv", weight, _zeros(0), a.in_shape, (sa_h * sb_h, sa_w * sb_w), padding, groups)
    if fused.out_shape != b.out_shape:
        return None
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, a.n_in)))
    want, got = b.lin(a.lin(x)), fused.lin(x)
    return fused if torch.allclose(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()) + 1e-12) else None


def _add(a: _Map | None, b: _Map | None, shape: tuple) -> _Map:
    """Two maps from one source into one population, summed (exact)."""
    a, b = a or _identity(shape), b or _identity(shape)
    if a.kind == b.kind == "diag":
        return _Map("diag", a.weight + b.weight, a.bias + b.bias, a.in_shape, nodes=a.nodes + b.nodes)
    if (a.kind == b.kind == "conv" and a.weight.shape == b.weight.shape and a.stride == b.stride
            and a.padding == b.padding and a.groups == b.groups):
        return _Map("conv", a.weight + b.weight, a.bias + b.bias, a.in_shape, a.stride, a.padding, a.groups,
                    a.nodes + b.nodes)
    da, db = _dense(a), _dense(b)
    return _Map("dense", da.weight + db.weight, a.bias + b.bias, a.in_shape, nodes=a.nodes + b.nodes)


def _identity(shape: tuple) -> _Map:
    n = int(np.prod(shape))
    return _Map("diag", np.ones(n), _zeros(n), tuple(shape))


def _synapse_map(m: _Map, src_shape: tuple) -> _Map:
    """A composed map as what an IR synapse can be: dense or conv (an elementwise map over a (C, H, W)
    population with one value per channel is a depthwise 1x1 conv, otherwise a diagonal matrix)."""
    if m.kind != "diag":
        return m
    per = _channel_values(m.weight, src_shape)
    if per is not None:
        return _Map("conv", per.reshape(-1, 1, 1, 1).copy(), m.bias, tuple(src_shape), groups=len(per),
                    nodes=m.nodes)
    return _dense(m)


# ------------------------------------------------------------------------------------------ neurons
@dataclass
class _Neuron:
    """A population's float dynamics at dt, per neuron (module docstring): the current
    ``u = (1 - k_syn) u + gain x + u_bias`` and the membrane ``v = (1 - k_mem) v + u + leak``, spiking
    where ``v > theta`` and reset to ``v_reset``. An LI node uses the current only (its output is u)."""

    kind: str
    k_syn: np.ndarray
    gain: np.ndarray
    u_bias: np.ndarray
    k_mem: np.ndarray | None = None
    leak: np.ndarray | None = None
    theta: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    subtract: bool = False


def _param(where: str, node, name: str, n: int, allow_inf: bool = False) -> np.ndarray:
    v = _floats(where, node, name).reshape(-1)
    if v.size not in (1, n):
        raise QsnnError(f"{where}: {name} has {v.size} values but the population has {n} neurons; the graph's "
                        "shapes are inconsistent")
    if np.isnan(v).any() or (not allow_inf and np.isinf(v).any()):
        raise QsnnError(f"{where}: {name} holds NaN{' or Inf' if not allow_inf else ''}")
    return np.broadcast_to(v, (n,)).copy()


def _decay(where: str, node, name: str, n: int, dt: float, method: str) -> np.ndarray:
    """The fraction of state lost per step: dt / tau (Euler) or 1 - exp(-dt / tau) (exponential)."""
    tau = _param(where, node, name, n, allow_inf=True)
    if (tau <= 0).any():
        raise QsnnError(f"{where}: {name} must be positive, found {float(tau.min())}")
    ratio = dt / tau
    if method == "exp":
        return -np.expm1(-ratio)
    if (ratio > 1 + 1e-9).any():
        raise _refuse(where, "Euler step longer than tau", f" (dt = {dt} > {name} = {float(tau.min())})")
    return np.minimum(ratio, 1.0)


def _neuron_of(where: str, node, n: int, dt: float, method: str) -> _Neuron:
    """The float dynamics of an IF, LIF, CubaLIF or LI node at ``dt`` (module docstring)."""
    kind, one, zero = _kind(node), np.ones(n), np.zeros(n)
    if kind == "LI":
        k = _decay(where, node, "tau", n, dt, method)
        return _Neuron(kind, k, k * _param(where, node, "r", n), k * _param(where, node, "v_leak", n))
    theta, v_reset = _param(where, node, "v_threshold", n), _param(where, node, "v_reset", n)
    meta = {str(k).lower(): str(v).lower() for k, v in (getattr(node, "metadata", None) or {}).items()}
    subtract = any(meta.get(k, "") in ("subtract", "subtractive") for k in ("reset", "reset_mechanism"))
    if kind == "IF":
        gain, k_mem, leak, k_syn = dt * _param(where, node, "r", n), zero, zero, one
    elif kind == "LIF":
        k_mem = _decay(where, node, "tau", n, dt, method)
        gain, leak, k_syn = k_mem * _param(where, node, "r", n), k_mem * _param(where, node, "v_leak", n), one
    else:  # CubaLIF
        k_syn, k_mem = _decay(where, node, "tau_syn", n, dt, method), _decay(where, node, "tau_mem", n, dt, method)
        gain = k_mem * _param(where, node, "r", n) * k_syn * _param(where, node, "w_in", n)
        leak = k_mem * _param(where, node, "v_leak", n)
    return _Neuron(kind, k_syn, gain, zero.copy(), k_mem, leak, theta, v_reset, subtract)


def _readout_of(where: str, node, n: int, dt: float, method: str) -> _Neuron:
    """The float dynamics of a readout (an LI, CubaLI or I feeding the Output): a CUBA LIF that never fires
    (module docstring), kind "readout"; its output is v."""
    kind, one, zero = _kind(node), np.ones(n), np.zeros(n)
    if kind == "I":
        k_syn, k_mem, gain, leak = one, zero, dt * _param(where, node, "r", n), zero
    elif kind == "LI":
        k_mem = _decay(where, node, "tau", n, dt, method)
        k_syn, gain, leak = one, k_mem * _param(where, node, "r", n), k_mem * _param(where, node, "v_leak", n)
    else:  # CubaLI
        k_syn, k_mem = _decay(where, node, "tau_syn", n, dt, method), _decay(where, node, "tau_mem", n, dt, method)
        gain = k_mem * _param(where, node, "r", n) * k_syn * _param(where, node, "w_in", n)
        leak = k_mem * _param(where, node, "v_leak", n)
    return _Neuron("readout", k_syn, gain, zero.copy(), k_mem, leak, np.full(n, np.inf), zero.copy(), False)


# ------------------------------------------------------------------------------------------ structure
@dataclass
class _Structure:
    """A flattened graph with every node's output shape, linear map (single node) and neuron dynamics."""

    g: _Graph
    shapes: dict
    maps: dict
    neurons: dict
    populations: list  # spiking nodes, topological order
    currents: dict  # population -> the LI node that is its synaptic current
    readouts: list = field(default_factory=list)  # populations that are non-spiking readouts (LI, CubaLI, I)


def _analyse(graph, dt: float, method: str) -> _Structure:
    g = _flat_graph(graph)
    currents, readouts = _check_primitives(g)
    shapes, maps, neurons = {}, {}, {}
    for name in g.order:
        node, where = g.nodes[name], f"node '{name}' ({_kind(g.nodes[name])})"
        if name == g.input:
            shapes[name] = _input_shape(where, node)
            continue
        in_shape = _merged_shape(g, name, shapes, where)
        if _kind(node) in NEURONS + READOUTS:
            n = int(np.prod(in_shape))
            neurons[name] = (_readout_of(where, node, n, dt, method) if name in readouts
                             else _neuron_of(where, node, n, dt, method))
            shapes[name] = in_shape
        else:
            maps[name], shapes[name] = _node_map(where, node, in_shape)
            if maps[name] is not None:
                maps[name].nodes = (name,)
    populations = [k for k in g.order if _kind(g.nodes[k]) in NEURONS or k in readouts]
    if not populations:
        raise QsnnError("the NIR graph has no spiking population (IF, LIF or CubaLIF); nothing to run on Loihi")
    heads = {currents.get(p, p): p for p in populations}
    for target, tails in g.recurrent.items():
        if target not in heads:
            raise _refuse(f"node '{target}' ({_kind(g.nodes[target])})", "recurrence",
                          f" (the cycle through '{tails[0]}' closes here, not at a spiking population)")
        for tail in tails:
            if int(np.prod(shapes[tail])) != int(np.prod(shapes[target])):
                raise QsnnError(f"node '{target}': its recurrent input from '{tail}' holds "
                                f"{int(np.prod(shapes[tail]))} values, it {int(np.prod(shapes[target]))}; the "
                                "graph's shapes are inconsistent")
    return _Structure(g, shapes, maps, neurons, populations, currents, readouts)


def _input_shape(where: str, node) -> tuple:
    value = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    try:
        shape = np.atleast_1d(np.asarray(value, np.float64))
    except (TypeError, ValueError):
        raise QsnnError(f"{where}: its shape must hold numbers") from None
    if not 1 <= shape.size <= 3 or shape.min() < 1 or np.any(shape % 1) or np.prod(shape) > MAX_NEURONS:
        raise QsnnError(f"{where}: input shape {shape.tolist()[:4]} must have 1 to 3 whole axes holding 1 to "
                        f"{MAX_NEURONS} inputs")
    return tuple(int(d) for d in shape)


def _merged_shape(g: _Graph, name: str, shapes: dict, where: str) -> tuple:
    """The shape a node receives: its inputs' shapes, which must hold as many values each (they add up)."""
    ins = [shapes[p] for p in g.preds[name]]
    sizes = {int(np.prod(s)) for s in ins}
    if len(sizes) > 1:
        detail = ", ".join(f"'{p}' {shapes[p]}" for p in g.preds[name])
        raise QsnnError(f"{where}: its inputs have different sizes ({detail}); the graph's shapes are inconsistent")
    return max(ins, key=len)


def _check_primitives(g: _Graph) -> tuple:
    """Refuse every node the IR cannot hold, by name; returns ({population: LI node} for LI -> IF/LIF, [readout
    nodes]: LI, CubaLI or I nodes that feed the Output directly)."""
    currents, readouts = {}, []
    for name in g.order:
        kind = _kind(g.nodes[name])
        if kind in ("Input", "Output") or kind in NEURONS or kind in LINEAR:
            continue
        if kind in READOUTS and g.succs[name] == [g.output]:
            readouts.append(name)
            continue
        if kind == "LI":
            succ = g.succs[name]
            if len(succ) == 1 and _kind(g.nodes[succ[0]]) in ("IF", "LIF") and g.preds[succ[0]] == [name]:
                currents[succ[0]] = name
                continue
        if kind in REFUSED:
            raise _refuse(f"node '{name}'", kind)
        raise QsnnError(f"node '{name}' is a {kind}, which is not a NIR 1.0 primitive this importer knows")
    return currents, readouts


def _incoming(st: _Structure, name: str, memo: dict) -> list:
    """[(source, composed map or None)] from each population (or the input) to the output of node ``name``."""
    if name in memo:
        return memo[name]
    out = []
    for p in st.g.preds[name]:
        if p == st.g.input or p in st.populations:
            base = [(p, None)]
        else:
            base = _incoming(st, p, memo)
        out += [(src, _compose(m, st.maps.get(name))) for src, m in base]
    memo[name] = out
    return out


def _population_sources(st: _Structure, pop: str, memo: dict) -> list:
    """[(source, summed map or None)] into population ``pop``, one per source, in first-seen order."""
    head = st.currents.get(pop, pop)
    summed = {}
    for p in st.g.preds[head]:
        pairs = [(p, None)] if p == st.g.input or p in st.populations else _incoming(st, p, memo)
        for src, m in pairs:
            summed[src] = _add(summed[src], m, st.shapes[src]) if src in summed else m
    return list(summed.items())


def _recurrent_source(st: _Structure, pop: str, memo: dict):
    """The summed map of population ``pop``'s recurrent paths (from its own spikes, one step late), or None
    when it has none; a path from any other population is refused by name."""
    head = st.currents.get(pop, pop)
    summed = None
    for q in st.g.recurrent.get(head, ()):
        for src, m in ([(q, None)] if q in st.populations else _incoming(st, q, memo)):
            if src != pop:
                raise _refuse(f"node '{head}'", "recurrence",
                              f" (a loop from '{src}' back into '{pop}', not from '{pop}' itself)")
            m = _dense(m or _identity(st.shapes[pop]))
            summed = m if summed is None else _add(summed, m, st.shapes[pop])
    return summed


def _layer_order(st: _Structure, sources: dict) -> list:
    """The populations as IR layers: each must feed the next (its main synapse), others are skips."""
    done, order = set(), []
    while len(order) < len(st.populations):
        ready = [p for p in st.populations if p not in done
                 and all(s == st.g.input or s in done for s, _ in sources[p])]
        if len(ready) != 1:
            raise _refuse(f"nodes {', '.join(repr(p) for p in ready[:3])}", "parallel populations")
        prev = order[-1] if order else st.g.input
        if prev not in [s for s, _ in sources[ready[0]]]:
            raise _refuse(f"node '{ready[0]}'", "parallel populations", f" (it is not fed by '{prev}')")
        order.append(ready[0])
        done.add(ready[0])
    pairs = _incoming(st, st.g.output, {})
    if len(pairs) != 1 or pairs[0][0] not in st.populations:
        raise QsnnError(f"node '{st.g.output}' (Output) must be fed by one spiking population, it is fed by "
                        f"{', '.join(repr(s) for s, _ in pairs) or 'nothing'}")
    if pairs[0][1] is not None:
        raise _refuse(f"node '{st.g.output}'", "readout without neurons")
    if pairs[0][0] != order[-1]:
        raise _refuse(f"node '{order[-1]}'", "unconnected population")
    return order


# ------------------------------------------------------------------------------------------ float simulator
def simulate_float(graph_or_path, spikes, dt: float, method: str = "euler") -> dict:
    """Run a NIR graph's equations at ``dt`` in float64 (module docstring), node by node in zero-delay time
    (a recurrent path's output one step late), on input spikes [T, N, n_in] (0/1). Returns {population node:
    spikes uint8 [T, N, n]}; its ``"_peaks"`` entry holds {population: (max |u| [n], max |v| before reset [n])},
    its ``"_voltages"`` entry {readout node: v float64 [T, N, n]} (in the graph's voltage units)."""
    graph, _ = _graph_arg(graph_or_path)
    dt, method = _check_dt(dt), _check_method(method)
    return _simulate(_analyse(graph, dt, method), np.asarray(spikes))


def _simulate(st: _Structure, spikes: np.ndarray) -> dict:
    T, N = spikes.shape[:2]
    t64 = torch.float64
    par = {k: {f: torch.from_numpy(np.asarray(v, np.float64)) for f, v in vars(nrn).items()
               if isinstance(v, np.ndarray)} for k, nrn in st.neurons.items()}
    state = {k: [torch.zeros(N, len(nrn.k_syn), dtype=t64), torch.zeros(N, len(nrn.k_syn), dtype=t64)]
             for k, nrn in st.neurons.items()}
    out = {p: np.zeros((T, N, len(st.neurons[p].k_syn)), np.uint8) for p in st.populations}
    volts = {p: np.zeros((T, N, len(st.neurons[p].k_syn))) for p in st.readouts}
    peaks = {p: [np.zeros(len(st.neurons[p].k_syn)), np.zeros(len(st.neurons[p].k_syn))] for p in st.populations}
    tails = {q for qs in st.g.recurrent.values() for q in qs}
    last = {q: torch.zeros(N, int(np.prod(st.shapes[q])), dtype=t64) for q in tails}  # step t - 1's outputs
    with torch.no_grad():
        for t in range(T):
            val = {st.g.input: torch.from_numpy(spikes[t].reshape(N, -1).astype(np.float64))}
            for name in st.g.order:
                if name == st.g.input:
                    continue
                x = sum(val[p] for p in st.g.preds[name]) + sum(last[q] for q in st.g.recurrent.get(name, ()))
                if name in st.neurons:
                    q, s = par[name], state[name]
                    s[0] = (1 - q["k_syn"]) * s[0] + q["gain"] * x + q["u_bias"]
                    if st.neurons[name].kind == "LI":
                        val[name] = s[0]
                        continue
                    s[1] = (1 - q["k_mem"]) * s[1] + s[0] + q["leak"]
                    fired = s[1] > q["theta"]
                    peaks[name][0] = np.maximum(peaks[name][0], s[0].abs().amax(0).numpy())
                    peaks[name][1] = np.maximum(peaks[name][1], s[1].abs().amax(0).numpy())
                    if name in volts:  # a readout never fires (theta = inf): its output is v
                        volts[name][t] = s[1].numpy()
                    s[1] = torch.where(fired, q["v_reset"].expand_as(s[1]), s[1])
                    val[name] = fired.to(t64)
                    out[name][t] = fired.numpy()
                else:
                    m = st.maps.get(name)
                    val[name] = x if m is None else m.apply(x)
            last = {q: val[q] for q in tails}
    out["_peaks"] = {p: tuple(v) for p, v in peaks.items()}
    out["_voltages"] = volts
    return out


# ------------------------------------------------------------------------------------------ import
def import_nir(graph_or_path, dt: float | None = None, timesteps: int | None = None, weight_bits: int = 8,
               calibration=None, *, labels=None, approximate: bool = False, method: str = "euler",
               samples: int = 32, rate: float = 0.2, seed: int = 0) -> tuple[Network, dict]:
    """A feed-forward NIR graph (a ``nir.NIRGraph`` or a .nir path) -> (IR ``Network``, report dict).

    ``dt``: seconds per step (NIR holds none; a qsnn-lava export carries its own). ``timesteps``: steps per
    sample. ``weight_bits``: mantissa width (2..8; mantissas in +-(2^(b-1) - 1)). ``calibration``: input
    spikes [T, N, n_in] (0/1) whose float activity sets each layer's weight_exp (else a static bound does)
    and on which float and integer networks are compared (else ``samples`` random inputs at ``rate``),
    with ``labels`` [N] giving both accuracies. ``approximate``: accept what Loihi 2 can only approximate
    (``APPROXIMABLE``; listed in the report). ``method``: "euler" or "exp" (module docstring).

    A graph exported by ``export_nir`` carries its integers in node metadata and imports bit-exactly
    (report["exact"] is True). The report (docs/nir.md): per layer the weight, threshold, bias and decay
    quantization errors and weight_exp; the approximations made; and float-vs-integer spike agreement per
    layer (``reference.simulate``). Anything the IR cannot hold raises QsnnError naming the node.

    Example:
        >>> import nir, numpy as np
        >>> g = nir.NIRGraph.from_list(nir.Affine(weight=np.array([[2.0, -1.0]]), bias=np.zeros(1)),
        ...                            nir.LIF(tau=np.array([0.01]), r=np.array([10.0]), v_leak=np.zeros(1),
        ...                                    v_threshold=np.ones(1)))
        >>> net, report = import_nir(g, dt=1e-3, timesteps=4)
        >>> layer = net.layers[0]
        >>> layer.synapse.weight.tolist(), layer.neuron.dv, round(report["layers"]["lif"]["weight"]["max_rel"], 4)
        ([[127, -64]], 410, 0.0039)
    """
    graph, source = _graph_arg(graph_or_path)
    meta = dict(graph.metadata or {})
    exact = meta.get("qsnn_format") == EXPORT_FORMAT
    if dt is None and "dt" not in meta:
        raise QsnnError(f"{source} holds no time step; give dt (seconds per step, as the graph was trained at, "
                        "e.g. dt=1e-3)")
    dt = _check_dt(meta["dt"] if dt is None else dt)
    method = _check_method(meta.get("discretization", method) if exact else method)
    if timesteps is None and "qsnn_timesteps" not in meta:
        raise QsnnError(f"{source} does not say how many steps a sample runs; give timesteps")
    timesteps = _whole(meta["qsnn_timesteps"] if timesteps is None else timesteps, "timesteps", 1, MAX_TIMESTEPS)
    bits = _whole(weight_bits, "weight_bits", 2, 8)
    st = _analyse(graph, dt, method)
    memo = {}
    sources = {p: _population_sources(st, p, memo) for p in st.populations}
    order = _layer_order(st, sources)
    x = _inputs(calibration, st, timesteps, samples, rate, seed)
    floats = _simulate(st, x)
    report = {"source": source, "dt": dt, "method": method, "timesteps": timesteps, "weight_bits": bits,
              "exact": exact, "layers": {}, "approximations": []}
    if exact:
        net = _exact_network(st, order, meta, timesteps)
    else:
        peaks = floats["_peaks"] if calibration is not None else None
        net = _quantized_network(st, order, sources, timesteps, bits, peaks, approximate, report)
        net.meta = {"imported_from": source.strip("'"), "format": "nir", "dt": dt, "method": method}
    try:
        net.validate()
    except QsnnError as e:
        raise QsnnError(f"{source}: {e}") from None
    units = {name: (1 / (1 << ACT_SHIFT) if exact else e["unit"]) for name, e in
             ((layer.name, report["layers"].get(layer.name, {})) for layer in net.layers)}
    report["agreement"] = _agreement(net, x, floats, order, labels,
                                     "calibration" if calibration is not None else f"random (rate {rate})", units)
    return net, report


def _check_dt(dt) -> float:
    try:
        v = float(np.asarray(dt).reshape(-1)[0]) if np.size(dt) == 1 else float("nan")
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise QsnnError(f"dt = {dt!r} must be a positive number of seconds per step")
    return v


def _check_method(method) -> str:
    if method not in METHODS:
        raise QsnnError(f"method '{method}' is not known; use 'euler' (forward Euler) or 'exp' (exponential step)")
    return method


def _inputs(calibration, st: _Structure, timesteps: int, samples: int, rate: float, seed: int) -> np.ndarray:
    n_in = int(np.prod(st.shapes[st.g.input]))
    if calibration is None:
        n = _whole(samples, "samples", 1, 1 << 20)
        return (np.random.default_rng(seed).random((timesteps, n, n_in)) < rate).astype(np.uint8)
    x = np.asarray(calibration)
    if x.ndim != 3 or x.shape[0] != timesteps or x.shape[2] != n_in or x.shape[1] < 1:
        raise QsnnError(f"calibration spikes have shape {x.shape}; this graph takes [T={timesteps}, N, {n_in}]")
    if x.dtype.fields is not None or not np.isin(x, (0, 1)).all():
        raise QsnnError("calibration spikes must be 0/1")
    return x.astype(np.uint8)


def _layer_name(pop: str) -> str:
    return f"{pop}_" if pop == INPUT else pop


# ------------------------------------------------------------------------------------------ quantization
@dataclass
class _FloatLayer:
    """One population ready for integers, in its threshold's voltage units: synapse maps (rows already
    scaled by the neuron's gain), per-step bias into v, threshold, and the decays."""

    sources: list  # [(IR source name, _Map)], the main one first, the layer's own (recurrent) one last
    bias: np.ndarray
    theta: float
    k_syn: float
    k_mem: float
    has_current: bool
    norm: np.ndarray  # per-neuron factor applied (per-neuron thresholds folded into the rows)
    readout: bool = False  # a non-spiking readout (ir.Readout): no threshold


def _float_layer(st: _Structure, pop: str, srcs: list, prev: str, approximate: bool, notes: list) -> _FloatLayer:
    where = f"node '{pop}' ({_kind(st.g.nodes[pop])})"
    nrn = st.neurons[pop]
    if pop in st.currents:  # LI -> IF/LIF: the LI is the current
        li = st.neurons[st.currents[pop]]
        nrn = _Neuron(nrn.kind, li.k_syn, nrn.gain * li.gain, nrn.gain * li.u_bias, nrn.k_mem, nrn.leak,
                      nrn.theta, nrn.v_reset, nrn.subtract)
    k_syn, k_mem = _uniform(where, "tau_syn" if pop not in st.currents else "tau", nrn.k_syn, approximate, notes), \
        _uniform(where, "tau_mem" if nrn.kind == "CubaLIF" else "tau", nrn.k_mem, approximate, notes)
    if nrn.subtract:
        if not approximate:
            raise _refuse(where, "subtractive reset")
        notes.append(f"{where}: subtractive reset replaced by Loihi's reset to 0")
    theta, leak = nrn.theta.copy(), nrn.leak.copy()
    if nrn.kind == "readout":  # no threshold: the unit comes from the weights alone
        theta = np.zeros_like(theta)
    if np.any(nrn.v_reset != 0):
        if not approximate:
            raise _refuse(where, "v_reset", f" = {float(np.abs(nrn.v_reset).max())}")
        theta, leak = theta - nrn.v_reset, leak - k_mem * nrn.v_reset
        notes.append(f"{where}: v_reset != 0 shifted into the threshold and leak (the neuron starts at v_reset)")
    if (theta < 0).any():
        raise _refuse(where, "negative threshold", f" ({float(theta.min())})")
    if np.all(theta == theta[0]):
        norm = np.ones_like(theta)
    elif (theta == 0).any():
        raise _refuse(where, "zero and nonzero thresholds in one layer")
    else:
        norm = theta.max() / theta
    bias_in = sum((m.bias for _, m in srcs if m is not None), np.zeros_like(theta))
    u_bias = nrn.u_bias + nrn.gain * bias_in
    has_current = k_syn < 1.0
    if has_current and np.any(u_bias != 0):
        if not approximate:
            raise _refuse(where, "bias into a synaptic filter")
        u_bias = u_bias / k_syn
        notes.append(f"{where}: bias into the synaptic current added to v at its steady state")
    rows = nrn.gain * norm
    maps = []
    for src, m in sorted(srcs, key=lambda sm: sm[0] != prev):  # main first; a recurrent one stays last
        syn = _synapse_map(m if m is not None else _identity(st.shapes[src]), st.shapes[src])
        syn = _dense(syn) if src == pop else syn  # the IR's recurrent synapse is a Dense
        syn = _compose(_Map(syn.kind, syn.weight, _zeros(syn.n_out), syn.in_shape, syn.stride, syn.padding,
                            syn.groups, syn.nodes), _Map("diag", rows, _zeros(len(rows)), syn.out_shape))
        maps.append((INPUT if src == st.g.input else _layer_name(src), syn))
    return _FloatLayer(maps, norm * (leak + u_bias), float(theta.max()), k_syn, k_mem, has_current, norm,
                       nrn.kind == "readout")


def _uniform(where: str, name: str, k: np.ndarray, approximate: bool, notes: list) -> float:
    """One decay per layer: refused (or averaged, with a note) when the neurons' time constants differ."""
    if np.ptp(k) <= 1e-12 * max(1.0, float(np.abs(k).max())):
        return float(k[0])
    if not approximate:
        raise _refuse(where, "time constants that differ within a layer", f" ({name})")
    notes.append(f"{where}: {name} differs between neurons; their mean decay is used")
    return float(k.mean())


def _quantized_network(st: _Structure, order: list, sources: dict, timesteps: int, bits: int, peaks,
                       approximate: bool, report: dict) -> Network:
    """The IR of the populations in ``order``, each quantized at the finest unit that has headroom; fills
    ``report["layers"]`` and ``report["approximations"]``."""
    layers = []
    input_shape = st.shapes[st.g.input]
    memo = {}
    for i, pop in enumerate(order):
        rec = _recurrent_source(st, pop, memo)
        if rec is not None and np.any(rec.bias):
            where = f"node '{pop}' ({_kind(st.g.nodes[pop])})"
            if not approximate:
                raise _refuse(where, "bias on a recurrent synapse")
            report["approximations"].append(f"{where}: the recurrent path's bias is added from the first step")
        srcs = sources[pop] + ([(pop, rec)] if rec is not None else [])
        fl = _float_layer(st, pop, srcs, order[i - 1] if i else st.g.input, approximate,
                          report["approximations"])
        name = _layer_name(pop)
        best, rule, legal, last = None, None, None, None
        for cand in _candidates(fl, name, bits):
            last = cand
            net = Network(input_shape, layers + [cand[0]], timesteps)
            if _layer_violations(net, len(layers)):
                continue
            legal = cand
            rule = _headroom(net, name, cand, fl, peaks[pop] if peaks is not None else None)
            if rule:
                best = cand
                break
        if best is None:  # no headroom guarantee: the coarsest legal unit (or validate() names the field)
            best, rule = legal or last, "none (coarsest legal weight_exp)"
        layers.append(best[0])
        report["layers"][name] = {**_errors(fl, best), "headroom": rule, "nir_node": _kind(st.g.nodes[pop]),
                                  "composed_from": [list(m.nodes) for _, m in fl.sources]}
    return Network(input_shape, layers, timesteps)


def _headroom(net: Network, name: str, cand, fl: _FloatLayer, peaks) -> str | None:
    """Why candidate ``cand`` (the last layer of ``net``) keeps u and v inside 24 bits, or None: the
    calibrated float peaks stay below 2^22, else the static bound proves u cannot wrap, else at least
    the threshold stays HEADROOM_BITS below the limit."""
    from qsnn_lava.bounds import static_bounds

    kappa = cand[1]
    if peaks is not None:
        peak = max(float((peaks[0] * fl.norm).max()), float((peaks[1] * fl.norm).max())) / kappa
        return "calibration" if peak < CALIBRATION_LIMIT else None
    if not static_bounds(net)[name]["u_can_wrap"]:
        return "static bound"
    if cand[0].neuron.vth << VTH_SHIFT <= UV_MAX >> HEADROOM_BITS:
        return "threshold headroom"
    return None


def _layer_violations(net: Network, i: int) -> list:
    where = f"layer {i} ({net.layers[i].name})"
    return [v for v in net.violations() if v.where.startswith(where)]


def _candidates(fl: _FloatLayer, name: str, bits: int):
    """IR layers of ``fl``, finest internal unit first: yields (Layer, kappa, weight_exps). kappa is the
    voltage of one internal unit (a weight mantissa at weight_exp e is 64 * 2^e of them). For each
    weight_exp e of the main synapse, kappa makes its largest weight the top mantissa (no smaller than the
    skips allow at their largest exponent); every synapse then takes the smallest exponent that fits."""
    top = (1 << (bits - 1)) - 1
    wmax = [float(np.abs(m.weight).max()) if m.weight.size else 0.0 for _, m in fl.sources]
    floor = max(w / (top * 2.0 ** (ACT_SHIFT + _exps(m.kind)[-1])) for w, (_, m) in zip(wmax, fl.sources))
    seen = set()
    for e in reversed(_exps(fl.sources[0][1].kind)):
        if max(wmax) > 0:
            kappa = max(wmax[0] / (top * 2.0 ** (ACT_SHIFT + e)), floor)
        else:  # no weights: the threshold sits HEADROOM_BITS below the 24-bit limit
            kappa = (fl.theta or 1.0) / (UV_MAX >> HEADROOM_BITS) / 2.0 ** e
        if kappa in seen:
            continue
        seen.add(kappa)
        es = [_fit_exp(w, kappa, top, m.kind) for w, (_, m) in zip(wmax, fl.sources)]
        synapses = [_int_synapse(m, kappa * 2.0 ** (ACT_SHIFT + ej), ej, top) for (_, m), ej in zip(fl.sources, es)]
        vth = int(round(fl.theta / (kappa * 2 ** VTH_SHIFT)))
        bias_mant, bias_exp = _bias(fl.bias / kappa)
        du = DECAY_MAX if not fl.has_current else int(np.clip(round(DECAY_UNITY * fl.k_syn) - 1, 0, DECAY_MAX))
        dv = int(np.clip(round(DECAY_UNITY * fl.k_mem), 0, DECAY_MAX))
        if fl.readout:
            neuron = Readout(synapses[0].n_out, du=du, dv=dv, bias_mant=bias_mant, bias_exp=bias_exp)
        else:
            neuron = LIF(synapses[0].n_out, vth=vth, du=du, dv=dv, bias_mant=bias_mant, bias_exp=bias_exp)
        skips = [Skip(src, syn) for (src, _), syn in zip(fl.sources[1:], synapses[1:]) if src != name]
        rec = next((syn for (src, _), syn in zip(fl.sources[1:], synapses[1:]) if src == name), None)
        yield Layer(name, synapses[0], neuron, weight_bits=bits, skips=skips, recurrent=rec), kappa, es


def _exps(kind: str) -> tuple:
    """The weight exponents a synapse may use, ascending: Lava's Dense any, its CPU Conv only 0."""
    return tuple(range(WEIGHT_EXP_RANGE[0], WEIGHT_EXP_RANGE[1] + 1)) if kind == "dense" else (0,)


def _fit_exp(wmax: float, kappa: float, top: int, kind: str) -> int:
    """The smallest weight_exp at which mantissas of magnitude up to ``wmax`` fit +-top at unit ``kappa``."""
    for e in _exps(kind):
        if round(wmax / (kappa * 2.0 ** (ACT_SHIFT + e))) <= top:
            return e
    return _exps(kind)[-1]  # unreachable: kappa respects every synapse's largest exponent


def _int_synapse(m: _Map, unit: float, e: int, top: int):
    """The IR synapse of a float map at ``unit`` (voltage per mantissa): mantissas round(W / unit)."""
    mant = np.clip(np.round(m.weight / unit), -top, top).astype(np.int64)
    if m.kind == "dense":
        return Dense(mant, weight_exp=e)
    return Conv(mant, m.in_shape, stride=m.stride, padding=m.padding, groups=m.groups)


def _bias(b: np.ndarray) -> tuple:
    """Per-step bias in internal units -> (bias_mant, bias_exp): the smallest exponent that fits 13 bits."""
    worst = float(np.abs(b).max()) if b.size else 0.0
    for e in range(BIAS_EXP_RANGE[0], BIAS_EXP_RANGE[1] + 1):
        if worst / 2 ** e <= BIAS_MANT_RANGE[1]:
            return np.round(b / 2 ** e).astype(np.int64), e
    return np.round(b / 2 ** BIAS_EXP_RANGE[1]).astype(np.int64), BIAS_EXP_RANGE[1]  # validate() names it


def _errors(fl: _FloatLayer, cand) -> dict:
    """Quantization errors of one layer, in the threshold's voltage units: max abs and relative."""
    layer, kappa, es = cand

    def err(true, got):
        true, got = np.asarray(true, np.float64), np.asarray(got, np.float64)
        a = float(np.abs(got - true).max()) if true.size else 0.0
        scale = float(np.abs(true).max()) if true.size else 0.0
        return {"max_abs": a, "max_rel": a / scale if scale else (0.0 if a == 0 else float("inf"))}

    syns = [layer.synapse] + [k.synapse for k in layer.skips] + ([layer.recurrent] if layer.recurrent else [])
    w_true = np.concatenate([m.weight.reshape(-1) for _, m in fl.sources])
    w_got = np.concatenate([s.weight.reshape(-1) * kappa * 2.0 ** (ACT_SHIFT + e) for s, e in zip(syns, es)])
    n = layer.neuron
    bias_got = (n.bias_mant.astype(np.float64) * 2.0 ** n.bias_exp) * kappa
    theta_got = fl.theta if fl.readout else n.vth * kappa * 2 ** VTH_SHIFT  # a readout has no threshold
    return {"weight": err(w_true, w_got), "threshold": err([fl.theta], [theta_got]), "unit": kappa,
            "bias": err(fl.bias, bias_got),
            "du": err([fl.k_syn], [(n.du + 1) / DECAY_UNITY]), "dv": err([fl.k_mem], [n.dv / DECAY_UNITY]),
            "weight_exp": es, "vth": n.vth, "du_int": n.du, "dv_int": n.dv}


def _agreement(net: Network, x: np.ndarray, floats: dict, order: list, labels, inputs: str,
               units: dict) -> dict:
    """Float NIR simulation vs the integer network (``reference.simulate``), per layer: the fraction of
    equal (step, sample, neuron) entries, and of spike events both fire (|both| / |either|), end to end and
    "local" (the integer layer fed the float graph's spikes of its sources: its own quantization alone);
    with ``labels``, the accuracy of both (most output spikes, or for a readout the largest voltage summed
    over T; ties to the lowest index). A readout layer is compared by its voltage instead: the integer v
    times its unit (``units``: layer name -> graph voltage per internal unit) against the float v, as the
    largest absolute error relative to the largest |v| (end to end, and local as above), and the fraction of
    samples whose summed-voltage argmax agrees."""
    from qsnn_lava.reference import layer_inputs, layer_run, lif_params, simulate

    rec = simulate(net, x)
    float_out = {INPUT: torch.from_numpy(x.astype(np.int64))}
    float_out.update({layer.name: torch.from_numpy(floats[p].astype(np.int64)) for layer, p in zip(net.layers, order)})
    out = {"inputs": inputs, "samples": int(x.shape[1]), "layers": {}}
    with torch.no_grad():
        for i, (pop, got) in enumerate(zip(order, rec.spikes)):
            name = net.layers[i].name
            if name in rec.voltages:
                fv, iv = floats["_voltages"][pop], rec.voltages[name] * units[name]
                _, _, lv = layer_run(net.layers[i], layer_inputs(net, i, float_out), lif_params(net.layers[i].neuron),
                                     trace=True)
                scale = float(np.abs(fv).max()) or 1.0
                out["layers"][name] = {
                    "voltage_rel_error": float(np.abs(iv - fv).max()) / scale,
                    "local_voltage_rel_error": float(np.abs(lv.numpy() * units[name] - fv).max()) / scale,
                    "argmax_agreement": float((np.argmax(fv.sum(0), -1) == np.argmax(iv.sum(0), -1)).mean())}
                continue
            f = floats[pop].astype(bool)
            local = layer_run(net.layers[i], layer_inputs(net, i, float_out),
                              lif_params(net.layers[i].neuron)).numpy().astype(bool)
            out["layers"][net.layers[i].name] = {
                "spike_agreement": float((f == got.astype(bool)).mean()),
                "event_agreement": _events(f, got.astype(bool)), "local_event_agreement": _events(f, local),
                "float_spikes": int(f.sum()), "int_spikes": int(got.sum())}
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        if y.size != x.shape[1]:
            raise QsnnError(f"labels hold {y.size} values for {x.shape[1]} samples")
        last = floats["_voltages"].get(order[-1], floats[order[-1]])
        f_pred = np.argmax(last.sum(axis=0), axis=-1)
        out["float_accuracy"] = float((f_pred == y).mean())
        out["int_accuracy"] = rec.accuracy(y)
    return out


def _events(a: np.ndarray, b: np.ndarray) -> float:
    """|a and b| / |a or b| over boolean spike arrays (1.0 when neither fires)."""
    either = int((a | b).sum())
    return float((a & b).sum() / either) if either else 1.0


def format_report(report: dict) -> str:
    """A short text table of ``import_nir``'s report: per layer the errors, weight_exp and agreement."""
    rows = [f"{'layer':<16} {'w rel':>8} {'vth rel':>8} {'dv abs':>8} {'du abs':>8} {'w_exp':>6} {'spikes eq':>9} "
            f"{'events eq':>9} {'local eq':>9}"]
    agree, nan = report.get("agreement", {}).get("layers", {}), float("nan")
    for name, e in report["layers"].items():
        a = agree.get(name, {})
        if "voltage_rel_error" in a:
            rows.append(f"{name[:16]:<16} {e['weight']['max_rel']:8.4f} {'-':>8} {e['dv']['max_abs']:8.5f} "
                        f"{e['du']['max_abs']:8.5f} {str(e['weight_exp'][0]):>6}  readout: v rel error "
                        f"{a['voltage_rel_error']:.4f}, argmax agreement {a['argmax_agreement']:.4f}")
            continue
        rows.append(f"{name[:16]:<16} {e['weight']['max_rel']:8.4f} {e['threshold']['max_rel']:8.4f} "
                    f"{e['dv']['max_abs']:8.5f} {e['du']['max_abs']:8.5f} {str(e['weight_exp'][0]):>6} "
                    f"{a.get('spike_agreement', nan):9.4f} {a.get('event_agreement', nan):9.4f} "
                    f"{a.get('local_event_agreement', nan):9.4f}")
    ag = report.get("agreement", {})
    if "float_accuracy" in ag:
        rows.append(f"accuracy: float {ag['float_accuracy']:.4f}, integer {ag['int_accuracy']:.4f}")
    rows += [f"approximated: {a}" for a in report.get("approximations", [])]
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ exact (our exports)
def _meta_int(where: str, meta: dict, key: str, lo: int = -(1 << 31), hi: int = (1 << 31) - 1) -> int:
    if key not in meta:
        raise QsnnError(f"{where}: metadata '{key}' is missing; the graph says it is a qsnn-lava export "
                        "(drop its qsnn_format metadata to quantize it afresh)")
    return _whole(meta[key], f"{where}: metadata '{key}'", lo, hi)


def _meta_ints(where: str, meta: dict, key: str, size: int | None = None) -> np.ndarray:
    if key not in meta:
        raise QsnnError(f"{where}: metadata '{key}' is missing; the graph says it is a qsnn-lava export "
                        "(drop its qsnn_format metadata to quantize it afresh)")
    v = np.asarray(meta[key])
    if v.dtype.kind not in "iu" or (size is not None and v.size != size):
        raise QsnnError(f"{where}: metadata '{key}' must hold {size or 'some'} integers, it holds {v.size} "
                        f"{v.dtype}")
    return v.astype(np.int64)


def _exact_network(st: _Structure, order: list, meta: dict, timesteps: int) -> Network:
    """The IR a qsnn-lava export stands for, from the integers in its metadata (checked against its floats)."""
    layers = []
    for pop in order:
        head = st.currents.get(pop, pop)
        node = st.g.nodes[pop]
        nm = dict(node.metadata or {})
        where = f"node '{pop}'"
        n = int(np.prod(st.shapes[pop]))
        fields = dict(du=_meta_int(where, nm, "qsnn_du"), dv=_meta_int(where, nm, "qsnn_dv"),
                      bias_mant=_meta_ints(where, nm, "qsnn_bias_mant", n),
                      bias_exp=_meta_int(where, nm, "qsnn_bias_exp"))
        if pop in st.readouts:
            neuron = Readout(n, **fields)
        else:
            neuron = LIF(n, vth=_meta_int(where, nm, "qsnn_vth"), **fields)
        if pop not in st.readouts and not np.all(np.asarray(node.v_threshold) == neuron.vth):
            raise QsnnError(f"{where}: v_threshold differs from its qsnn_vth metadata (the graph was edited after "
                            "export); drop its qsnn_format metadata to quantize it afresh")
        synapses = []
        for p in st.g.preds[head] + st.g.recurrent.get(head, []):
            syn_name = _behind_identities(st, p)
            src = _behind_identities(st, st.g.preds[syn_name][0])
            sm = dict(st.g.nodes[syn_name].metadata or {})
            synapses.append((_meta_int(f"node '{syn_name}'", sm, "qsnn_skip", RECURRENT_SKIP, 1 << 20),
                             INPUT if src == st.g.input else _meta_name(st, src),
                             _exact_synapse(st, syn_name, sm)))
        synapses.sort(key=lambda t: t[0])
        rec = [syn for k, _, syn in synapses if k == RECURRENT_SKIP]
        synapses = [t for t in synapses if t[0] != RECURRENT_SKIP]
        if not synapses or synapses[0][0] != -1:
            raise QsnnError(f"{where}: no synapse node marks itself as the main one (qsnn_skip = -1)")
        if len(rec) > 1 or (rec and rec[0].type != "dense"):
            raise QsnnError(f"{where}: its recurrent synapse nodes (qsnn_skip = {RECURRENT_SKIP}) must be one Affine")
        layers.append(Layer(str(nm.get("qsnn_name", pop)), synapses[0][2], neuron,
                            weight_bits=_meta_int(where, nm, "qsnn_weight_bits", 0, 64),
                            skips=[Skip(s, syn) for _, s, syn in synapses[1:]], recurrent=rec[0] if rec else None))
    try:
        net_meta = json.loads(str(meta.get("qsnn_meta", "{}")))
    except ValueError:
        raise QsnnError("the graph's qsnn_meta metadata is not JSON; drop its qsnn_format metadata") from None
    shape = tuple(int(d) for d in _meta_ints("the NIR graph", meta, "qsnn_input_shape"))
    return Network(shape, layers, timesteps, meta=net_meta if isinstance(net_meta, dict) else {})


def _behind_identities(st: _Structure, name: str) -> str:
    """The first node at or before ``name`` that is not a Flatten or a nested Input/Output."""
    while _kind(st.g.nodes[name]) == "Flatten" or name in st.g.passthrough:
        name = st.g.preds[name][0]
    return name


def _meta_name(st: _Structure, pop: str) -> str:
    return str(dict(st.g.nodes[pop].metadata or {}).get("qsnn_name", pop))


def _exact_synapse(st: _Structure, name: str, sm: dict):
    where = f"node '{name}'"
    node = st.g.nodes[name]
    kind = str(sm.get("qsnn_kind", ""))
    e = _meta_int(where, sm, "qsnn_weight_exp", *WEIGHT_EXP_RANGE)
    w = _meta_ints(where, sm, "qsnn_weight")
    if kind == "dense":
        syn = Dense(w, weight_exp=e)
        floats = np.asarray(node.weight, np.float64)
    elif kind == "conv":
        syn = Conv(w, tuple(_meta_ints(where, sm, "qsnn_in_shape", 3)),
                   stride=tuple(_meta_ints(where, sm, "qsnn_stride", 2)),
                   padding=tuple(_meta_ints(where, sm, "qsnn_padding", 2)),
                   groups=_meta_int(where, sm, "qsnn_groups", 1), weight_exp=e)
        floats = np.asarray(node.weight, np.float64) if _kind(node) == "Conv2d" else np.ones(w.shape)
    else:
        raise QsnnError(f"{where}: metadata qsnn_kind = '{kind[:20]}' must be 'dense' or 'conv'")
    want = syn.weight * 2.0 ** e
    if kind == "conv" and _kind(node) == "Conv2d":
        want = _ungrouped(want, syn.groups)
    if floats.shape != want.shape or not np.array_equal(floats, want):
        raise QsnnError(f"{where}: its float weights differ from the qsnn_weight mantissas in its metadata (the graph "
                        "was edited after export); drop its qsnn_format metadata to quantize it afresh")
    return syn


# ------------------------------------------------------------------------------------------ export
def export_nir(net: Network, dt: float = DEFAULT_DT):
    """The integer network ``net`` as a ``nir.NIRGraph`` at time step ``dt`` (seconds; in the graph's
    metadata). Floats are the integers times their units: one weight mantissa (64 internal Loihi units)
    is 1.0 of voltage, so weights are ``m * 2^weight_exp``, thresholds ``vth`` and a bias
    ``(bias_mant << bias_exp) / 64`` per step. Neurons: du = 4095, dv = 0 -> IF (r = 1/dt); du = 4095 ->
    LIF (tau = 4096 dt / dv, r = tau / dt); otherwise CubaLIF (tau_syn = 4096 dt / (du + 1),
    w_in = tau_syn / dt), or LI -> IF when dv = 0. A readout (``ir.Readout``) is an I (du = 4095, dv = 0), an LI
    (du = 4095) or a CubaLI. Synapses: Affine, Conv2d, or SumPool2d for a sum pool; a
    recurrent synapse is an Affine from the population back to itself (or to its LI current), a cycle.
    Every node carries its exact integers in metadata (``qsnn_*``), so ``import_nir`` of the result gives
    back ``net`` exactly.

    Example:
        >>> import numpy as np
        >>> from qsnn_lava.ir import LIF, Dense, Layer, Network
        >>> net = Network((2,), [Layer("out", Dense(np.array([[3, -1]])), LIF(1, vth=2, du=4095, dv=1024))], 4)
        >>> g = export_nir(net, dt=1e-3)
        >>> type(g.nodes["out"]).__name__, float(g.nodes["out"].tau[0]), g.nodes["out:synapse"].weight.tolist()
        ('LIF', 0.004, [[3.0, -1.0]])
        >>> import_nir(g)[0].layers[0].neuron.dv
        1024
    """
    nir = _nir()
    dt = _check_dt(dt)
    net.check_structure()
    nodes, edges = {}, []
    names = {INPUT: "input"}
    shapes = {INPUT: _nir_input_shape(net)}
    nodes["input"] = nir.Input(input_type=np.asarray(shapes[INPUT]))
    for i, layer in enumerate(net.layers):
        where = f"layer {i} ({layer.name})"
        if layer.neuron.type not in ("lif", "readout"):
            raise QsnnError(f"{where}: a {layer.neuron.type} neuron cannot be exported to NIR: "
                            f"{EXPORT_REFUSED['qmem']}")
        node = _node_name(layer.name, nodes)
        head = _export_neuron(nodes, edges, node, layer, dt, where)
        for j, (src, syn) in enumerate(net.sources(i)):
            sname = _node_name(f"{node}:synapse" if j == 0 else f"{node}:skip{j - 1}", nodes)
            bias = _synapse_bias(layer, j, where)
            nodes[sname] = _export_synapse(nir, syn, bias, j - 1, where)
            prev = names[src]
            if syn.type == "dense" and len(shapes[src]) > 1:
                flat = _node_name(f"{sname}:flatten", nodes)
                nodes[flat] = nir.Flatten(input_type={"input": np.asarray(shapes[src])}, start_dim=0, end_dim=-1)
                edges.append((prev, flat))
                prev = flat
            elif syn.type == "conv" and tuple(shapes[src]) != tuple(syn.in_shape):
                raise QsnnError(f"{where}: {EXPORT_REFUSED['conv fed by a flat layer']}")
            edges += [(prev, sname), (sname, head)]
        if layer.recurrent is not None:  # population -> Affine -> itself (or its LI current): one step later
            if len(layer.shape) > 1:
                raise QsnnError(f"{where}: cannot export to NIR: {EXPORT_REFUSED['recurrent synapse on a conv map']}")
            rname = _node_name(f"{node}:recurrent", nodes)
            nodes[rname] = _export_synapse(nir, layer.recurrent, None, RECURRENT_SKIP, where)
            edges += [(node, rname), (rname, head)]
        names[layer.name] = node
        shapes[layer.name] = tuple(layer.shape)
    out = _node_name("output", nodes)
    nodes[out] = nir.Output(output_type=np.asarray(shapes[net.layers[-1].name]))
    edges.append((names[net.layers[-1].name], out))
    meta = {"qsnn_format": EXPORT_FORMAT, "qsnn_version": EXPORT_VERSION, "dt": dt, "discretization": "euler",
            "qsnn_timesteps": net.timesteps, "qsnn_input_shape": np.asarray(net.input_shape, np.int64),
            "qsnn_meta": json.dumps(net.meta, sort_keys=True),
            "units": "voltage 1.0 = one weight mantissa = 64 internal Loihi units"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(net: Network, path, dt: float = DEFAULT_DT) -> None:
    """``export_nir(net, dt)`` written to ``path`` with ``nir.write`` (atomically: all or nothing)."""
    from qsnn_lava.io import atomic_write

    graph = export_nir(net, dt)
    with atomic_write(path) as tmp:
        _nir().write(tmp, graph)


def _nir_input_shape(net: Network) -> tuple:
    """The input's NIR shape: the (C, H, W) a conv reads it as, else the IR's input shape."""
    for i in range(len(net.layers)):
        for src, syn in net.sources(i):
            if src == INPUT and syn.type == "conv":
                return tuple(syn.in_shape)
    return tuple(net.input_shape)


def _node_name(name: str, taken: dict) -> str:
    """A node name for a layer (no '/', which HDF5 would read as a path), unique in the graph."""
    base = name.replace("/", "|") or "layer"
    out, k = base, 0
    while out in taken or out in ("input",):
        k += 1
        out = f"{base}_{k}"
    return out


def _synapse_bias(layer: Layer, j: int, where: str) -> np.ndarray | None:
    """The bias an IF (or I readout) layer's main synapse carries (per step, in voltage units); None for the
    others."""
    n = layer.neuron
    if j != 0 or not (n.du == DECAY_MAX and n.dv == 0):
        return None
    return n.bias_mant.astype(np.float64) * 2.0 ** n.bias_exp / (1 << ACT_SHIFT)


def _export_synapse(nir, syn, bias, skip: int, where: str):
    meta = {"qsnn_kind": syn.type, "qsnn_weight": syn.weight.astype(np.int64), "qsnn_weight_exp": syn.weight_exp,
            "qsnn_skip": skip}
    w = syn.weight.astype(np.float64) * 2.0 ** syn.weight_exp
    if syn.type == "dense":
        b = np.zeros(syn.n_out) if bias is None else bias
        return nir.Affine(weight=w, bias=b, metadata=meta)
    meta.update(qsnn_in_shape=np.asarray(syn.in_shape, np.int64), qsnn_stride=np.asarray(syn.stride, np.int64),
                qsnn_padding=np.asarray(syn.padding, np.int64), qsnn_groups=syn.groups)
    c_out = syn.weight.shape[0]
    if bias is not None:
        per = _channel_values(bias, syn.out_shape)
        if per is None:
            raise QsnnError(f"{where}: cannot export to NIR: "
                            f"{EXPORT_REFUSED['IF bias that varies within a conv channel']}")
        bias = per
    is_pool = (syn.groups == syn.in_shape[0] == c_out and np.all(syn.weight == 1) and syn.weight_exp == 0
               and tuple(syn.stride) == syn.kernel and syn.padding == (0, 0))
    if is_pool and (bias is None or not np.any(bias)):
        return nir.SumPool2d(kernel_size=np.asarray(syn.kernel), stride=np.asarray(syn.stride),
                             padding=np.asarray(syn.padding), metadata=meta)
    # ungrouped (zeros between the groups): nir 1.0.8's type check takes a grouped conv's C_in/groups for its
    # input channels, so other tools could not read a grouped one with nir.read's defaults
    return nir.Conv2d(input_shape=tuple(syn.in_shape[1:]), weight=_ungrouped(w, syn.groups),
                      stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=1, groups=1,
                      bias=np.zeros(c_out) if bias is None else bias, metadata=meta)


def _ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    return _full_kernel(_Map("conv", weight, _zeros(0), (weight.shape[1] * groups, 1, 1), groups=groups))


def _export_neuron(nodes: dict, edges: list, node: str, layer: Layer, dt: float, where: str) -> str:
    """Add the neuron node(s) of ``layer``; returns the node its synapses feed."""
    nir = _nir()
    n = layer.neuron
    shape = tuple(layer.shape)
    full = lambda v: np.full(shape, float(v))  # noqa: E731
    bias = (n.bias_mant.astype(np.float64) * 2.0 ** n.bias_exp / (1 << ACT_SHIFT)).reshape(shape)
    meta = {"qsnn_name": layer.name, "qsnn_vth": n.vth, "qsnn_du": n.du, "qsnn_dv": n.dv,
            "qsnn_bias_mant": n.bias_mant.astype(np.int64), "qsnn_bias_exp": n.bias_exp,
            "qsnn_weight_bits": layer.weight_bits}
    keep_u, keep_v = DECAY_UNITY / (n.du + 1), DECAY_UNITY / n.dv if n.dv else None  # tau / dt
    if n.type == "readout":  # LI, I or CubaLI: no threshold, its output is v
        meta.pop("qsnn_vth")
        if n.du == DECAY_MAX and n.dv == 0:
            nodes[node] = nir.I(r=full(1 / dt), metadata=meta)  # its bias travels as the main synapse's bias
        elif n.du == DECAY_MAX:
            nodes[node] = nir.LI(tau=full(dt * keep_v), r=full(keep_v), v_leak=bias * keep_v, metadata=meta)
        elif n.dv:
            nodes[node] = nir.CubaLI(tau_syn=full(dt * keep_u), tau_mem=full(dt * keep_v), r=full(keep_v),
                                     v_leak=bias * keep_v, w_in=full(keep_u), metadata=meta)
        else:
            raise QsnnError(f"{where}: cannot export to NIR: {EXPORT_REFUSED['readout with a current and no leak']}")
        return node
    if n.du == DECAY_MAX and n.dv == 0:
        nodes[node] = nir.IF(r=full(1 / dt), v_threshold=full(n.vth), v_reset=full(0), metadata=meta)
    elif n.du == DECAY_MAX:
        nodes[node] = nir.LIF(tau=full(dt * keep_v), r=full(keep_v), v_leak=bias * keep_v, v_threshold=full(n.vth),
                              v_reset=full(0), metadata=meta)
    elif n.dv:
        nodes[node] = nir.CubaLIF(tau_syn=full(dt * keep_u), tau_mem=full(dt * keep_v), r=full(keep_v),
                                  v_leak=bias * keep_v, v_threshold=full(n.vth), v_reset=full(0),
                                  w_in=full(keep_u), metadata=meta)
    else:
        if np.any(bias):
            raise QsnnError(f"{where}: cannot export to NIR: "
                            f"{EXPORT_REFUSED['bias on a neuron with a current filter and no leak']}")
        current = _node_name(f"{node}:current", nodes)
        nodes[current] = nir.LI(tau=full(dt * keep_u), r=full(keep_u), v_leak=full(0))
        nodes[node] = nir.IF(r=full(1 / dt), v_threshold=full(n.vth), v_reset=full(0), metadata=meta)
        edges.append((current, node))
        return current
    return node
