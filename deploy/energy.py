"""Operation counts from a simulation Record, and energy estimates from them (counts x cost table).

Every energy this module produces is an ESTIMATE: operation counts measured on the bit-exact simulation,
multiplied by per-operation energies from a cost table. Nothing here is measured on Loihi. Each result
carries its table's name, label and source; print them. See docs/energy.md.

Counts (``count_ops``), per layer l and per inference (summed over T steps, averaged over N samples).
The fan-outs, SynOps and weight sizes come from ``qsnn_lava.metrics``, where they are counted once.
Layer l is fed by one or more synapse POPULATIONS p (``Network.sources(l)``: the main Dense or Conv
synapse, pooling as a fixed depthwise Conv, and any skip synapses). Population p has source spikes
s_p[t, j] (the network input, the previous layer or a skip's source) and a synapse matrix M_p [n, n_in_p]
(for a conv, the unrolled convolution: ``converters.lava_graph.synapse_matrix``); s_out[t, i] are the
layer's own spikes::

    fanout_p[j]       = #{i : M_p[i, j] is a synapse}        (structural: every weight of the kernel or
                                                               matrix that reaches j, zeros included)
    nnz_p[j]          = #{i : M_p[i, j] != 0}               (effective: nonzero weights only)
    synops_effective  = sum_p sum_t sum_j s_p[t, j] * nnz_p[j]     (one accumulate per nonzero synapse of a spike)
    synops_dense      = sum_p sum_t sum_j s_p[t, j] * fanout_p[j]  (all fan-out, zero weights included)
    synops_graded     = the part of synops_effective whose source is direct (graded) input (``net.input_bits``
                        > 1): s_p[t, j] = [x[t, j] != 0], and each event multiplies its b-bit payload by the
                        weight (a multiply-accumulate, MAC), where a binary spike only adds the weight (AC)
    synapses          = sum_p sum_j fanout_p[j]   (dense: n_in * n; conv: pairs inside the padded map)
    dense_ops         = synapses * T              (NeuroBench "Dense": no activation or weight sparsity)
    neuron_updates    = n * T
    active[t, i]      = (sum_p sum_j s_p[t, j] * [M_p[i, j] != 0]) > 0  or  s_out[t, i]
    neuron_updates_active = sum_t sum_i active[t, i];  neuron_updates_idle = n * T - active
    spikes            = sum_t sum_i s_out[t, i];   firing_rate = spikes / (n * T)
    input_rate        = sum_p sum_t sum_j s_p[t, j] / (sum_p n_in_p * T);   input_sparsity = 1 - input_rate
    weights           = sum_p (stored weights of p: n * n_in for a dense matrix, C_out*C_in/groups*kh*kw
                        for a conv kernel, which is shared by all positions)
    memory_weight_bits = weights * weight_bits    (``metrics.model_size``'s memory_bits: QP-SNN Eq. 16,
                        M = sum P_q * B_q, over every stored weight; zeros are stored too)
    memory_state_bits  = n * (24 + 24)  (u and v are 24-bit registers on Loihi; per sample, batch 1)
    spike_map_bits     = T * (n + sum_p n_in_p * bits_p)  (bits_p: input_bits for the network input, else 1)
    ann_activations    = n + sum_p n_in_p                  (the ANN twin's activations written / inputs read)

The ANN twin (the same network as a conventional ANN, ONCE per inference, not x T), per population by
its kind (``qsnn_lava.metrics.synapse_kind``)::

    dense     ann_macs = n_in * n
    conv      ann_macs = C_out * H_out * W_out * (C_in / groups) * kh * kw   (padded positions included)
    pool      ann_adds = n * (kh * kw - 1)   (a max pool's comparisons, or an average pool's adds; the
                                              average's 1 / k^2 scale is folded into the next layer)
    identity  ann_adds = n                   (the residual addition x + F(x))
    ann_params = weights of the dense and conv populations (pool and identity have none in an ANN;
                 ``metrics.model_size``'s learned parameters)

"Active" counts synaptic EVENTS (a spike through a nonzero weight), so inputs that cancel to a = 0 still
make the neuron active; a neuron driven only by its bias is active only when it spikes. Biases and
thresholds are not counted in the memory footprint. With the rate code the network input is already binary
spikes, so every layer, the first included, does accumulates (ACs), not MACs; the cost of encoding pixels to
spikes is not counted. With direct input the first layer's events are graded (``synops_graded``), each a
MAC, charged at the table's ``graded_synop_pJ``. The ANN twin's biases (folded BatchNorm) and activation functions are not counted.

Energy (``energy``), per layer, for an "snn" table::

    E = (synops_effective - synops_graded) * synop_pJ + synops_graded * graded_synop_pJ
        + neuron_updates_active * neuron_update_active_pJ
        + neuron_updates_idle * neuron_update_idle_pJ + spikes * spike_pJ

and for an "ann" table ``E = ann_macs * mac_pJ + ann_adds * add_pJ`` (``add_pJ`` defaults to ``mac_pJ``
when a user table omits it). Static (leakage) power, memory accesses outside the per-op figures, spike
routing between tiles and I/O are not included in any table.

Caveats worth repeating next to every number:
  * No per-operation energy of Loihi 2 has been published. ``loihi1`` is Loihi 1 (Davies et al., IEEE
    Micro 2018, Table 2), a pre-silicon SDF/SPICE estimate at 0.75 V, applied to this network.
  * The arithmetic-only 45 nm tables (Horowitz, ISSCC 2014) leave out memory accesses (10 pJ per 64-bit
    access of an 8 KB cache), which dominate a real design; the reviewed ``*_mem`` tables add them with one
    rule for the SNN and the ANN (``traffic_bits``: a weight read per synop or MAC, the SNN's u and v read
    and written per neuron update, activation maps) and charge arithmetic at the operand widths
    (``int_add_pJ``, ``int_mult_pJ``: interpolated between Horowitz's 8- and 32-bit entries).
  * Published SNN energy models disagree by orders of magnitude; Yan et al. (arXiv 2409.08290) find an
    SNN at T = 5 must stay below about 5.7 % spike rate to beat an equivalent quantized ANN.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.io import read_json_object, save_figure
from qsnn_lava.ir import INPUT, Network
from qsnn_lava.metrics import fanouts, population_size, spikes_per_source, synops
from qsnn_lava.record import Record

STATE_BITS = 24 + 24  # u and v, 24-bit each (Loihi 2 as modelled by Lava, see qsnn_lava.dynamics)

# ---------------------------------------------------------------------------------------------------
# Cost tables. Per-op energies in pJ; every number with its source (numbers as in /shared/docs/energy.md).
# ---------------------------------------------------------------------------------------------------

REQUIRED = {
    "snn": ("synop_pJ", "neuron_update_active_pJ", "neuron_update_idle_pJ", "spike_pJ"),
    "ann": ("mac_pJ",),
}
# ann: pooling comparisons / adds and residual additions (default: mac_pJ); snn: a graded (direct-input) synaptic
# event, a multiply-accumulate (default: synop_pJ, for tables that publish no figure for it)
# memory traffic (docs/energy.md "Memory traffic"): sram_bit_pJ per bit moved; the widths it applies to (snn:
# weight_bits, default each layer's own, state_bits default 48; ann: weight_bits and activation_bits, default 8)
OPTIONAL = {"ann": ("add_pJ", "sram_bit_pJ", "weight_bits", "activation_bits"),
            "snn": ("graded_synop_pJ", "sram_bit_pJ", "weight_bits", "state_bits")}

LOIHI1 = {
    "name": "loihi1",
    "kind": "snn",
    "label": "pre-silicon estimate, Loihi 1 (not Loihi 2)",
    "source": "Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE Micro "
              "38(1), 2018, Table 2 (0.75 V, 14 nm, pre-silicon SDF/SPICE simulation)",
    "synop_pJ": 23.6,  # synaptic spike op, minimum
    "neuron_update_active_pJ": 81.0,
    "neuron_update_idle_pJ": 52.0,  # 'inactive' neuron update
    "spike_pJ": 1.7,  # spike within a tile; tile hops (3.0 E-W / 4.0 N-S pJ) not counted
    "notes": "No per-op energy of Loihi 2 is published; these Loihi 1 figures are applied to this network. "
             "Static power (about 104 mW per chip) and inter-tile hops are not included. Loihi 1 has no graded "
             "spikes: a direct-input event is charged as one synop (no published figure for it).",
}

CMOS45_SNN = {
    "name": "cmos45_snn",
    "kind": "snn",
    "label": "estimate, 45 nm CMOS arithmetic only",
    "source": "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, 0.9 V",
    "synop_pJ": 0.1,  # 32-bit int add: nearest published width to the 24-bit membrane accumulator
    "graded_synop_pJ": 3.2,  # a graded input event: 32-bit int mult (3.1 pJ) + add (0.1 pJ)
    # One LIF update = 2 multiplies (u and v decay) + 4 adds (u + a, v + u, + bias, threshold compare),
    # at the nearest published width (32 bit: mult 3.1 pJ, add 0.1 pJ): 2 * 3.1 + 4 * 0.1 = 6.6 pJ.
    # The datapath evaluates the same arithmetic whether or not input arrived, so idle = active.
    "neuron_update_active_pJ": 6.6,
    "neuron_update_idle_pJ": 6.6,
    "spike_pJ": 0.0,  # no interconnect figure in this source
    "notes": "Accumulate at the membrane width (24 bit on Loihi); 0.1 pJ is the 32-bit int add, the nearest "
             "published width. Neuron update 6.6 pJ is composed from Horowitz's 32-bit int mult (3.1 pJ) "
             "and add (0.1 pJ), not a published figure. Memory accesses excluded (they dominate in practice). "
             "The literature's 'theoretical energy' counts only SOPs x E_AC: set the neuron costs to 0 in "
             "a custom table to reproduce it.",
}

ANN_FP32 = {
    "name": "ann_fp32",
    "kind": "ann",
    "label": "estimate, 45 nm CMOS arithmetic only",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: fp32 mult 3.7 pJ + fp32 add 0.9 pJ",
    "mac_pJ": 4.6,
    "add_pJ": 0.9,  # fp32 add: pooling comparisons / adds and residual additions
    "notes": "Dense MACs once per inference; pooling comparisons and residual additions at the fp32 add "
             "(0.9 pJ). Biases, activation functions and memory accesses excluded.",
}

ANN_INT8 = {
    "name": "ann_int8",
    "kind": "ann",
    "label": "estimate, 45 nm CMOS arithmetic only",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: int8 mult 0.2 pJ + int8 add 0.03 pJ",
    "mac_pJ": 0.23,
    "add_pJ": 0.03,  # int8 add: pooling comparisons / adds and residual additions
    "notes": "Dense MACs once per inference; an 8-bit add is optimistic for the wider accumulator a real "
             "int8 MAC needs. Pooling comparisons and residual additions at the int8 add (0.03 pJ). "
             "Biases, activation functions and memory accesses excluded.",
}

CMOS45_SNN_FP32 = {
    "name": "cmos45_snn_fp32",
    "kind": "snn",
    "label": "estimate, 45 nm CMOS arithmetic only, float32 SNN",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: fp32 add 0.9 pJ, fp32 mult 3.7 pJ",
    "synop_pJ": 0.9,  # a spike adds its fp32 weight to the fp32 current: one fp32 add
    "graded_synop_pJ": 4.6,  # a graded input event: fp32 mult (3.7 pJ) + add (0.9 pJ)
    # The same LIF update in fp32: 2 multiplies (u and v decay) + 4 adds: 2 * 3.7 + 4 * 0.9 = 11.0 pJ.
    "neuron_update_active_pJ": 11.0,
    "neuron_update_idle_pJ": 11.0,
    "spike_pJ": 0.0,
    "notes": "The float SNN: the same network and the same spike counts as the quantized one, with fp32 "
             "weights and state, so every synop is an fp32 add and every neuron update fp32 arithmetic. "
             "Neuron update 11.0 pJ composed from Horowitz's fp32 mult and add, not a published figure. "
             "Memory accesses excluded.",
}

# ---------------------------------------------------------------------------------------------------
# The reviewed 45 nm tables (issue #18): arithmetic at the operands' widths AND memory traffic, one rule for
# the SNN and the ANN. Every entry below is an estimate composed from these published Horowitz (ISSCC 2014,
# 45 nm, 0.9 V) figures; the derivation of each is in docs/energy.md ("The reviewed tables").
# ---------------------------------------------------------------------------------------------------
HOROWITZ_45NM = {  # pJ per operation, Horowitz ISSCC 2014, Fig. 1.1.9 (the table of operation energies)
    "int_add_8": 0.03, "int_add_32": 0.1, "int_mult_8": 0.2, "int_mult_32": 3.1,
    "fp_add_32": 0.9, "fp_mult_32": 3.7,
    "cache_8kb_64bit": 10.0,  # one 64-bit access of an 8 KB SRAM cache
}


def int_add_pJ(bits: int) -> float:
    """Estimated energy of a ``bits``-wide integer add: Horowitz's 8-bit (0.03 pJ) and 32-bit (0.1 pJ) adds
    interpolated as a power law in the width (E = 0.03 * (bits/8)^0.868; 24 bit: 0.078 pJ). Not published."""
    h = HOROWITZ_45NM
    k = math.log(h["int_add_32"] / h["int_add_8"]) / math.log(32 / 8)
    return h["int_add_8"] * (bits / 8) ** k


def int_mult_pJ(a_bits: int, b_bits: int) -> float:
    """Estimated energy of an ``a_bits`` x ``b_bits`` integer multiply: Horowitz's 8 x 8 (0.2 pJ) and 32 x 32
    (3.1 pJ) multiplies interpolated as a power law in the product of the widths (an array multiplier's
    partial products; E = 0.2 * (a*b/64)^0.988; 24 x 12: 0.88 pJ). Not published."""
    h = HOROWITZ_45NM
    k = math.log(h["int_mult_32"] / h["int_mult_8"]) / math.log(32 * 32 / 64)
    return h["int_mult_8"] * (a_bits * b_bits / 64) ** k


SRAM_BIT_PJ = HOROWITZ_45NM["cache_8kb_64bit"] / 64  # 0.156 pJ per bit read or written (reads = writes assumed)
# one LIF step (qsnn_lava.dynamics.lif_step): u and v decay, each a 24-bit state times a 12-bit factor
# (4096 - du - 1, 4096 - dv), then 4 adds at 24 bits: u + a, v + u, + bias, the threshold compare
_LIF_UPDATE_INT = 2 * int_mult_pJ(24, 12) + 4 * int_add_pJ(24)
_LIF_UPDATE_FP32 = 2 * HOROWITZ_45NM["fp_mult_32"] + 4 * HOROWITZ_45NM["fp_add_32"]

CMOS45_SNN_MEM = {
    "name": "cmos45_snn_mem",
    "kind": "snn",
    "label": "estimate, 45 nm CMOS arithmetic at operand width + SRAM traffic",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: int add 8/32 bit, int mult 8/32 bit (interpolated to the "
              "operand widths), 8 KB cache 10 pJ per 64-bit access",
    "synop_pJ": int_add_pJ(24),  # a binary spike adds its weight into the 24-bit u
    "graded_synop_pJ": int_mult_pJ(8, 8) + int_add_pJ(24),  # a graded event: payload x weight, into u
    "neuron_update_active_pJ": _LIF_UPDATE_INT,
    "neuron_update_idle_pJ": _LIF_UPDATE_INT,  # a clocked datapath does the same arithmetic either way
    "spike_pJ": 0.0,  # no interconnect figure in the source
    "sram_bit_pJ": SRAM_BIT_PJ,
    "state_bits": STATE_BITS,  # u and v read and written every step
    "notes": "Per synop: one 24-bit add + one weight read at its trained bits; per neuron update: the LIF "
             "arithmetic + u, v (48 bits) read and written; spike maps written and read at 1 bit (graded input "
             "at its input_bits). All interpolated from Horowitz's table, not published figures.",
}

ANN_INT8_MEM = {
    "name": "ann_int8_mem",
    "kind": "ann",
    "label": "estimate, 45 nm CMOS arithmetic at operand width + SRAM traffic",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: int8 mult 0.2 pJ + int32 add 0.1 pJ per MAC, 8 KB cache "
              "10 pJ per 64-bit access",
    "mac_pJ": HOROWITZ_45NM["int_mult_8"] + HOROWITZ_45NM["int_add_32"],  # int8 x int8 into a 32-bit accumulator
    "add_pJ": HOROWITZ_45NM["int_add_8"],  # pooling comparisons, residual adds of int8 activations
    "sram_bit_pJ": SRAM_BIT_PJ,
    "weight_bits": 8,
    "activation_bits": 8,
    "twin": "cmos45_snn_mem",
    "notes": "Per MAC: the int8 multiply, the 32-bit accumulate and one 8-bit weight read (no reuse, as for the "
             "SNN's synops); activations written once and read once per consuming layer at 8 bits; the "
             "accumulator is a register.",
}

ANN_FP32_MEM = {
    "name": "ann_fp32_mem",
    "kind": "ann",
    "label": "estimate, 45 nm CMOS arithmetic + SRAM traffic",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: fp32 mult 3.7 pJ + add 0.9 pJ, 8 KB cache 10 pJ per 64-bit "
              "access",
    "mac_pJ": HOROWITZ_45NM["fp_mult_32"] + HOROWITZ_45NM["fp_add_32"],
    "add_pJ": HOROWITZ_45NM["fp_add_32"],
    "sram_bit_pJ": SRAM_BIT_PJ,
    "weight_bits": 32,
    "activation_bits": 32,
    "twin": "cmos45_snn_mem",
    "notes": "As ann_int8_mem with fp32 arithmetic, weights and activations.",
}

CMOS45_SNN_FP32_MEM = {
    "name": "cmos45_snn_fp32_mem",
    "kind": "snn",
    "label": "estimate, 45 nm CMOS arithmetic + SRAM traffic, float32 SNN",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: fp32 add 0.9 pJ, fp32 mult 3.7 pJ, 8 KB cache 10 pJ per "
              "64-bit access",
    "synop_pJ": HOROWITZ_45NM["fp_add_32"],
    "graded_synop_pJ": HOROWITZ_45NM["fp_mult_32"] + HOROWITZ_45NM["fp_add_32"],
    "neuron_update_active_pJ": _LIF_UPDATE_FP32,
    "neuron_update_idle_pJ": _LIF_UPDATE_FP32,
    "spike_pJ": 0.0,
    "sram_bit_pJ": SRAM_BIT_PJ,
    "weight_bits": 32,
    "state_bits": 64,
    "notes": "The same counts as the QSNN with fp32 weights (32-bit reads) and fp32 u, v (64 bits read and "
             "written per update).",
}

ANN_FP32["twin"] = ANN_INT8["twin"] = "cmos45_snn"  # the arithmetic-only tables compare with each other

TABLES = {t["name"]: t for t in (LOIHI1, CMOS45_SNN, CMOS45_SNN_FP32, ANN_FP32, ANN_INT8,
                                 CMOS45_SNN_MEM, CMOS45_SNN_FP32_MEM, ANN_FP32_MEM, ANN_INT8_MEM)}


def _check_table(table: dict, where: str) -> dict:
    """The table itself if its kind and required per-op energies are valid; QsnnError naming the key."""
    kind = table.get("kind")
    if kind not in REQUIRED:
        raise QsnnError(f"{where}: key 'kind' is {kind!r}; it must be one of {', '.join(sorted(REQUIRED))}")
    for key in REQUIRED[kind]:
        if key not in table:
            raise QsnnError(f"{where}: key '{key}' is missing; a '{kind}' table needs "
                            f"{', '.join(REQUIRED[kind])} (energies in pJ)")
        v = table[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise QsnnError(f"{where}: key '{key}' = {v!r} is not a number; give the energy in pJ")
        if v < 0:
            raise QsnnError(f"{where}: key '{key}' = {v!r} is negative; energies must be >= 0 pJ")
    for key in OPTIONAL.get(kind, ()):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise QsnnError(f"{where}: key '{key}' = {v!r} must be a number >= 0 (energy in pJ)")
    return table


def load_cost_table(path) -> dict:
    """Read a user cost table from JSON. QsnnError (naming the file and the key) when invalid.

    ``{"kind": "snn", "name": ..., "label": ..., "source": ..., "synop_pJ": .., "neuron_update_active_pJ": ..,
    "neuron_update_idle_pJ": .., "spike_pJ": ..}`` or ``{"kind": "ann", ..., "mac_pJ": ..}``. ``name``
    defaults to the file stem, ``label`` to "user cost table", ``source`` to the file path.
    """
    path = Path(path)
    table = read_json_object(path, "cost table")
    _check_table(table, f"cost table '{path}'")
    table = dict(table)
    table.setdefault("name", path.stem)
    table.setdefault("label", "user cost table")
    table.setdefault("source", f"user file {path}")
    return table


# ---------------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------------

_POP_SUMMED = ("n_in", "weights", "nonzero_weights", "synapses", "nonzero_synapses", "input_spikes",
               "synops_effective", "synops_graded", "synops_dense", "dense_ops", "ann_macs", "ann_adds", "ann_params",
               "memory_weight_bits", "input_map_bits")
_SUMMED = ("weights", "nonzero_weights", "synapses", "nonzero_synapses", "input_spikes", "synops_effective",
           "synops_graded",
           "synops_dense", "dense_ops", "neuron_updates", "neuron_updates_active", "neuron_updates_idle",
           "spikes", "ann_macs", "ann_adds", "ann_params", "memory_weight_bits", "memory_state_bits",
           "spike_map_bits", "ann_activations")


def _conv_geometry(syn) -> dict:
    return {"stride": tuple(syn.stride), "padding": tuple(syn.padding), "groups": syn.groups}


def _events(syn, mask, s):
    """float32 [R, n_out]: per neuron, the number of input spikes in ``s`` [R, n_in] that reach it through
    ``mask`` (torch, weight-shaped 0/1 float32). Exact: counts are <= fan-in < 2^24."""
    if syn.type == "dense":
        return s @ mask.T
    import torch.nn.functional as F

    a = F.conv2d(s.reshape(-1, *syn.in_shape), mask, **_conv_geometry(syn))
    return a.reshape(s.shape[0], -1)


def _ann_ops(syn, kind: str) -> tuple[int, int]:
    """(MACs, adds) of one synapse population in the ANN twin (module docstring)."""
    if kind == "dense":
        return syn.n_in * syn.n_out, 0
    if kind == "conv":
        _, cin_g, kh, kw = syn.weight.shape
        return syn.n_out * cin_g * kh * kw, 0
    if kind == "pool":
        kh, kw = syn.kernel
        return 0, syn.n_out * (kh * kw - 1)
    return 0, syn.n_out  # identity: the residual addition


def count_ops(net: Network, inputs: np.ndarray, record: Record, chunk: int = 256) -> dict:
    """Operation counts per layer and in total, per inference, from a Record of ``net`` on ``inputs``.

    ``inputs``: uint8 [T, N, n_in]; ``record.spikes``: per layer uint8 [T, N, n] (zero-delay time).
    Formulas in the module docstring. Returns ``{"samples", "timesteps", "layers": [dict per layer],
    "total": dict}``; each layer also lists its synapse ``populations`` (source, kind and their share of
    the counts). Workload counts are floats (means over the N samples), static ones ints.
    """
    import torch

    x = np.asarray(inputs)
    T = net.timesteps
    if x.ndim != 3 or x.shape[0] != T or x.shape[2] != net.n_in:
        raise QsnnError(f"input spikes have shape {x.shape}; this network takes [T={T}, N, {net.n_in}]")
    N = x.shape[1]
    if N == 0:
        raise QsnnError("no samples: counts are per inference and need at least one")
    if len(record.spikes) != len(net.layers):
        raise QsnnError(f"record has {len(record.spikes)} layers, the network {len(net.layers)}")
    for layer, out in zip(net.layers, record.spikes):
        if out.shape != (T, N, layer.neuron.n):
            raise QsnnError(f"layer '{layer.name}': record spikes have shape {out.shape}, "
                            f"expected {(T, N, layer.neuron.n)}")
    spikes = {INPUT: x, **{layer.name: out for layer, out in zip(net.layers, record.spikes)}}
    per_source = spikes_per_source(net, x, record)  # spikes of each j, over T and samples
    layers = []
    for i, layer in enumerate(net.layers):
        n, bits = layer.neuron.n, int(layer.weight_bits)
        pops, masks = [], []
        for src, syn in net.populations(i):
            nnz, fan = fanouts(syn)
            size = population_size(syn, bits)
            kind = size["kind"]
            c = per_source[src]
            macs, adds = _ann_ops(syn, kind)
            nonzero = np.asarray(syn.weight) != 0
            graded = src == INPUT and net.input_bits > 1  # direct input: every event is a MAC
            pops.append({
                "source": src, "kind": kind, "n_in": int(syn.n_in),
                "weights": size["weights"], "nonzero_weights": int(nonzero.sum()),
                "synapses": int(fan.sum()), "nonzero_synapses": int(nnz.sum()),
                "input_spikes": int(c.sum()) / N,
                "synops_effective": synops(c, nnz) / N,
                "synops_graded": synops(c, nnz) / N if graded else 0.0,
                "synops_dense": synops(c, fan) / N,
                "dense_ops": int(fan.sum()) * T,
                "ann_macs": int(macs), "ann_adds": int(adds), "ann_params": size["parameters"],
                "memory_weight_bits": size["memory_bits"],
                # the source's map read once per step: 1 bit per spike, input_bits per graded input value
                "input_map_bits": int(syn.n_in) * T * (net.input_bits if src == INPUT else 1),
            })
            masks.append((src, syn, torch.from_numpy(nonzero.astype(np.float32))))
        out = spikes[layer.name]
        active = 0
        with torch.no_grad():
            for lo in range(0, N, chunk):
                got = None
                for src, syn, m in masks:
                    s = torch.from_numpy(spikes[src][:, lo:lo + chunk].reshape(-1, syn.n_in).astype(np.float32))
                    e = _events(syn, m, s)
                    got = e if got is None else got + e
                fired = torch.from_numpy(out[:, lo:lo + chunk].reshape(-1, n) != 0)
                active += int(((got > 0) | fired).sum())
        row = {"name": layer.name, "kind": pops[0]["kind"], "n": n, "weight_bits": bits}
        row.update({k: sum(p[k] for p in pops) for k in _POP_SUMMED})
        n_in = row["n_in"]
        updates = n * T
        n_spikes = int(out.sum(dtype=np.int64))
        row.update({
            "input_rate": row["input_spikes"] / (n_in * T),
            "input_sparsity": 1.0 - row["input_spikes"] / (n_in * T),
            "neuron_updates": updates,
            "neuron_updates_active": active / N,
            "neuron_updates_idle": (updates * N - active) / N,
            "spikes": n_spikes / N,
            "firing_rate": n_spikes / (N * n * T),
            "memory_state_bits": n * STATE_BITS,
            # memory traffic of the activations (docs/energy.md "Memory traffic"): the SNN writes its n-bit
            # spike map every step and each population reads its source's map; the ANN twin writes its n
            # activations once and reads each population's n_in inputs once
            "spike_map_bits": n * T + row["input_map_bits"],
            "ann_activations": n + n_in,
            "populations": pops,
        })
        layers.append(row)
    total = {k: sum(layer[k] for layer in layers) for k in _SUMMED}
    in_elems = sum(layer["n_in"] for layer in layers) * T
    total.update({
        "input_rate": total["input_spikes"] / in_elems,
        "input_sparsity": 1.0 - total["input_spikes"] / in_elems,
        "firing_rate": total["spikes"] / total["neuron_updates"],
        # NeuroBench: fraction of zero outputs over all spiking layers, steps and samples
        "activation_sparsity": 1.0 - total["spikes"] / total["neuron_updates"],
        "memory_bits": total["memory_weight_bits"] + total["memory_state_bits"],
    })
    total["memory_bytes"] = total["memory_bits"] / 8
    return {"samples": N, "timesteps": T, "layers": layers, "total": total}


def memory_bytes(counts: dict, weight_bits: int | None = None, state_bits: int = STATE_BITS,
                 ann: bool = False) -> float:
    """Footprint in bytes of the counted network at another width: every stored weight at ``weight_bits``
    (None: each layer's own) plus ``state_bits`` per neuron; ``ann=True``: the ANN twin's parameters at
    ``weight_bits`` only (activations are not stored state)."""
    if ann:
        return counts["total"]["ann_params"] * int(weight_bits) / 8
    w = (counts["total"]["memory_weight_bits"] if weight_bits is None
         else counts["total"]["weights"] * int(weight_bits))
    return (w + sum(layer["n"] for layer in counts["layers"]) * state_bits) / 8


def neurobench_metrics(counts: dict) -> dict:
    """The counts under NeuroBench's metric names (per inference).

    footprint: bytes of weights (at their trained bit width) plus neuron state (u, v: 24 bits each);
    activation_sparsity: zero fraction of all spiking layers' outputs; synaptic_operations: Effective_MACs
    (= synops_graded: the direct input's graded events; 0 with binary input), Effective_ACs (the other
    synops_effective) and Dense
    (synapses * T per layer: every activation and every synapse, as NeuroBench defines it).
    """
    t = counts["total"]
    return {
        "footprint": t["memory_bytes"],
        "activation_sparsity": t["activation_sparsity"],
        "synaptic_operations": {"Effective_MACs": t["synops_graded"],
                                "Effective_ACs": t["synops_effective"] - t["synops_graded"],
                                "Dense": float(t["dense_ops"])},
    }


# ---------------------------------------------------------------------------------------------------
# Energy
# ---------------------------------------------------------------------------------------------------

def traffic_bits(layer: dict, table: dict) -> dict:
    """Bits moved to and from SRAM per inference by one counted layer under ``table`` (docs/energy.md "Memory
    traffic"), the same rule for both kinds: every synaptic operation reads its weight (snn: each synop at
    the table's ``weight_bits`` or the layer's own; ann: each MAC at ``weight_bits``); neuron state (snn: u and
    v, ``state_bits``, read and written every neuron update; an ANN's accumulators are registers); activations
    (snn: ``spike_map_bits``; ann: ``ann_activations`` values at ``activation_bits``, written once and read
    once). Returns {"weight_read", "state_rw", "activations"} in bits."""
    if table["kind"] == "ann":
        return {"weight_read": layer["ann_macs"] * int(table.get("weight_bits", 8)),
                "state_rw": 0,
                "activations": layer["ann_activations"] * int(table.get("activation_bits", 8))}
    w_bits = int(table.get("weight_bits", layer["weight_bits"]))
    return {"weight_read": layer["synops_effective"] * w_bits,
            "state_rw": layer["neuron_updates"] * 2 * int(table.get("state_bits", STATE_BITS)),
            "activations": layer["spike_map_bits"]}


def _layer_parts(layer: dict, table: dict) -> dict:
    if table["kind"] == "ann":
        parts = {"mac": layer["ann_macs"] * table["mac_pJ"],
                 "add": layer["ann_adds"] * table.get("add_pJ", table["mac_pJ"])}
    else:
        graded = layer.get("synops_graded", 0.0)
        parts = {"synop": (layer["synops_effective"] - graded) * table["synop_pJ"],
                 "graded_synop": graded * table.get("graded_synop_pJ", table["synop_pJ"]),
                 "neuron_update_active": layer["neuron_updates_active"] * table["neuron_update_active_pJ"],
                 "neuron_update_idle": layer["neuron_updates_idle"] * table["neuron_update_idle_pJ"],
                 "spike": layer["spikes"] * table["spike_pJ"]}
    if "sram_bit_pJ" in table:
        parts.update({f"sram_{k}": bits * table["sram_bit_pJ"] for k, bits in traffic_bits(layer, table).items()})
    return parts


def energy(counts: dict, table: dict) -> dict:
    """Estimated energy per inference, per layer and in total (pJ and uJ), with the table's name and label.

    snn tables: synops_effective * synop_pJ + active updates * neuron_update_active_pJ
    + idle updates * neuron_update_idle_pJ + spikes * spike_pJ; ann tables: ann_macs * mac_pJ
    + ann_adds * add_pJ (add_pJ defaults to mac_pJ). A table with ``sram_bit_pJ`` adds the memory traffic
    (``traffic_bits``) at that energy per bit: parts sram_weight_read, sram_state_rw, sram_activations.
    """
    _check_table(table, f"cost table '{table.get('name', '?')}'")
    layers = []
    for layer in counts["layers"]:
        parts = _layer_parts(layer, table)
        pj = sum(parts.values())
        layers.append({"name": layer["name"], "pJ": pj, "uJ": pj * 1e-6, "parts_pJ": parts})
    parts = {k: sum(layer["parts_pJ"][k] for layer in layers) for k in layers[0]["parts_pJ"]} if layers else {}
    pj = sum(parts.values())
    return {"table": table.get("name", "?"), "kind": table["kind"], "label": table.get("label", ""),
            "source": table.get("source", ""), "layers": layers,
            "total": {"pJ": pj, "uJ": pj * 1e-6, "parts_pJ": parts}}


def compare_table(results: list) -> str:
    """Markdown table of ``results`` (``energy()`` results): per target its kind, label, estimated energy per
    inference (uJ) and the ratio to the first result."""
    if not results:
        return ""
    ref = results[0]["total"]["pJ"]
    lines = [f"| target | kind | label | energy / inference (uJ) | ratio to {results[0]['table']} |",
             "|---|---|---|---|---|"]
    for r in results:
        e = r["total"]["pJ"]
        ratio = f"{e / ref:.3g}" if ref > 0 else ("1" if e == 0 else "inf")
        lines.append(f"| {r['table']} | {r['kind']} | {r['label']} | {r['total']['uJ']:.4g} | {ratio} |")
    return "\n".join(lines) + "\n"


def verdicts(results: list, accuracy: float | None, ann_accuracy) -> list[str]:
    """One line per ANN cost table in ``results`` (``energy()`` results), when both accuracies are known:
    "cmos45_snn_mem vs ann_int8_mem: QSNN uses 0.4x the energy of the int8 ANN twin at 91.8 % vs 92.3 %".

    Each ANN table is compared with its ``twin`` SNN table (the same cost model) when that is in ``results``,
    else with the first SNN result. ``accuracy``: the QSNN's (a fraction); ``ann_accuracy``: the ANN twin's,
    one fraction for every ANN table or {table name: fraction}. A table without a known accuracy gets no line;
    no line either without an SNN result. Estimates, like the energies they divide."""
    if accuracy is None or ann_accuracy is None:
        return []
    snn = [r for r in results if r["kind"] == "snn"]
    lines = []
    for r in results:
        if r["kind"] != "ann" or not snn:
            continue
        acc = ann_accuracy.get(r["table"]) if isinstance(ann_accuracy, dict) else ann_accuracy
        if acc is None:
            continue
        twin = TABLES.get(r["table"], {}).get("twin")
        s = next((x for x in snn if x["table"] == twin), snn[0])
        ratio = s["total"]["pJ"] / r["total"]["pJ"] if r["total"]["pJ"] > 0 else math.inf
        what = {"ann_int8": "int8", "ann_int8_mem": "int8", "ann_fp32": "fp32", "ann_fp32_mem": "fp32"}.get(
            r["table"], r["table"])
        lines.append(f"{s['table']} vs {r['table']}: QSNN uses {ratio:.2g}x the energy of the {what} ANN twin "
                     f"at {100 * accuracy:.1f} % vs {100 * acc:.1f} %")
    return lines


def energy_bar_chart(results: list, path=None):
    """One bar per target of ``results`` (``energy()`` results; estimated uJ per inference, log scale when all
    are positive), labelled, saved as a PNG at ``path`` (``io.save_figure``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["table"] for r in results]
    values = [r["total"]["uJ"] for r in results]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(results), 3.6))
    colors = ["tab:orange" if r["kind"] == "snn" else "tab:blue" for r in results]
    bars = ax.bar(names, values, color=colors)
    if all(v > 0 for v in values):
        ax.set_yscale("log")
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("uJ per inference (estimate)")
    ax.set_title("Estimated energy: op counts x cost table (orange SNN, blue ANN)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
