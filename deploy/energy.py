"""Operation counts from a simulation Record, and energy estimates from them (counts x cost table).

Every energy this module produces is an ESTIMATE: operation counts measured on the bit-exact simulation,
multiplied by per-operation energies from a cost table. Nothing here is measured on Loihi. Each result
carries its table's name, label and source; print them. See docs/energy.md.

Counts (``count_ops``), per layer l and per inference (summed over T steps, averaged over N samples).
Layer l has n_in inputs, n neurons, weight W [n, n_in]; s_in[t, j] are its input spikes at step t
(the network input for l = 0, layer l-1's spikes otherwise), s_out[t, i] its own spikes::

    nnz_j             = #{i : W[i, j] != 0}                 (nonzero fan-out of source j)
    synops_effective  = sum_t sum_j s_in[t, j] * nnz_j      (one accumulate per nonzero synapse of a spike)
    synops_dense      = sum_t sum_j s_in[t, j] * n          (all fan-out, zero weights included)
    dense_ops         = n_in * n * T                        (NeuroBench "Dense": no activation or weight sparsity)
    neuron_updates    = n * T
    active[t, i]      = (sum_j s_in[t, j] * [W[i, j] != 0]) > 0  or  s_out[t, i]
    neuron_updates_active = sum_t sum_i active[t, i];  neuron_updates_idle = n * T - active
    spikes            = sum_t sum_i s_out[t, i];   firing_rate = spikes / (n * T)
    input_rate        = sum_t sum_j s_in[t, j] / (n_in * T);   input_sparsity = 1 - input_rate
    ann_macs          = n_in * n        (the same layer as a dense ANN layer, ONCE per inference, not x T)
    memory_weight_bits = n_in * n * weight_bits    (QP-SNN Eq. 16, M = sum P_q * B_q; zeros are stored too)
    memory_state_bits  = n * (24 + 24)  (u and v are 24-bit registers on Loihi; per sample, batch 1)

"Active" counts synaptic EVENTS (a spike through a nonzero weight), so inputs that cancel to a = 0 still
make the neuron active; a neuron driven only by its bias is active only when it spikes. Biases and
thresholds are not counted in the memory footprint. The network input is already binary spikes, so every
layer, the first included, does accumulates (ACs), not MACs; the cost of encoding pixels to spikes is
not counted.

Energy (``energy``), per layer, for an "snn" table::

    E = synops_effective * synop_pJ + neuron_updates_active * neuron_update_active_pJ
        + neuron_updates_idle * neuron_update_idle_pJ + spikes * spike_pJ

and for an "ann" table ``E = ann_macs * mac_pJ``. Static (leakage) power, memory accesses outside the
per-op figures, spike routing between tiles and I/O are not included in any table.

Caveats worth repeating next to every number:
  * No per-operation energy of Loihi 2 has been published. ``loihi1`` is Loihi 1 (Davies et al., IEEE
    Micro 2018, Table 2), a pre-silicon SDF/SPICE estimate at 0.75 V, applied to this network.
  * The 45 nm figures (Horowitz, ISSCC 2014) are per arithmetic operation only; memory accesses (10 pJ
    per 64-bit access of an 8 KB cache, 5 pJ per 32-bit SRAM access) would dominate a real design.
  * Published SNN energy models disagree by orders of magnitude; Yan et al. (arXiv 2409.08290) find an
    SNN at T = 5 must stay below about 5.7 % spike rate to beat an equivalent quantized ANN.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError
from qsnn_lava.io import atomic_write, read_json_object
from qsnn_lava.ir import Network
from qsnn_lava.record import Record

STATE_BITS = 24 + 24  # u and v, 24-bit each (Loihi 2 as modelled by Lava, see qsnn_lava.dynamics)

# ---------------------------------------------------------------------------------------------------
# Cost tables. Per-op energies in pJ; every number with its source (numbers as in /shared/docs/energy.md).
# ---------------------------------------------------------------------------------------------------

REQUIRED = {
    "snn": ("synop_pJ", "neuron_update_active_pJ", "neuron_update_idle_pJ", "spike_pJ"),
    "ann": ("mac_pJ",),
}

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
             "Static power (about 104 mW per chip) and inter-tile hops are not included.",
}

CMOS45_SNN = {
    "name": "cmos45_snn",
    "kind": "snn",
    "label": "estimate, 45 nm CMOS arithmetic only",
    "source": "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, 0.9 V",
    "synop_pJ": 0.1,  # 32-bit int add: nearest published width to the 24-bit membrane accumulator
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
    "notes": "Dense MACs once per inference; activation functions and memory accesses excluded.",
}

ANN_INT8 = {
    "name": "ann_int8",
    "kind": "ann",
    "label": "estimate, 45 nm CMOS arithmetic only",
    "source": "Horowitz, ISSCC 2014, 45 nm, 0.9 V: int8 mult 0.2 pJ + int8 add 0.03 pJ",
    "mac_pJ": 0.23,
    "notes": "Dense MACs once per inference; an 8-bit add is optimistic for the wider accumulator a real "
             "int8 MAC needs. Activation functions and memory accesses excluded.",
}

TABLES = {t["name"]: t for t in (LOIHI1, CMOS45_SNN, ANN_FP32, ANN_INT8)}


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

_SUMMED = ("weights", "nonzero_weights", "input_spikes", "synops_effective", "synops_dense", "dense_ops",
           "neuron_updates", "neuron_updates_active", "neuron_updates_idle", "spikes", "ann_macs",
           "memory_weight_bits", "memory_state_bits")


def count_ops(net: Network, inputs: np.ndarray, record: Record, chunk: int = 1024) -> dict:
    """Operation counts per layer and in total, per inference, from a Record of ``net`` on ``inputs``.

    ``inputs``: uint8 [T, N, n_in]; ``record.spikes``: per layer uint8 [T, N, n] (zero-delay time).
    Formulas in the module docstring. Returns ``{"samples", "timesteps", "layers": [dict per layer],
    "total": dict}``; workload counts are floats (means over the N samples), static ones ints.
    """
    x = np.asarray(inputs)
    T = net.timesteps
    if x.ndim != 3 or x.shape[0] != T or x.shape[2] != net.n_in:
        raise QsnnError(f"input spikes have shape {x.shape}; this network takes [T={T}, N, {net.n_in}]")
    N = x.shape[1]
    if N == 0:
        raise QsnnError("no samples: counts are per inference and need at least one")
    if len(record.spikes) != len(net.layers):
        raise QsnnError(f"record has {len(record.spikes)} layers, the network {len(net.layers)}")
    layers = []
    src = x
    for layer, out in zip(net.layers, record.spikes):
        w = layer.synapse.weight
        n, n_in = w.shape
        if out.shape != (T, N, n):
            raise QsnnError(f"layer '{layer.name}': record spikes have shape {out.shape}, expected {(T, N, n)}")
        mask = (w != 0)
        per_source = src.sum(axis=(0, 1), dtype=np.int64)  # spikes of each source j over t and samples
        input_spikes = int(per_source.sum())
        active = 0
        m32 = mask.T.astype(np.float32)  # event counts per neuron are <= n_in < 2^24: exact in float32
        for lo in range(0, N, chunk):
            s = src[:, lo:lo + chunk].reshape(-1, n_in).astype(np.float32)
            got_input = (s @ m32) > 0
            active += int((got_input | (out[:, lo:lo + chunk].reshape(-1, n) != 0)).sum())
        updates = n * T
        spikes = int(out.sum(dtype=np.int64))
        layers.append({
            "name": layer.name, "n_in": n_in, "n": n, "weight_bits": int(layer.weight_bits),
            "weights": n * n_in, "nonzero_weights": int(mask.sum()),
            "input_spikes": input_spikes / N,
            "input_rate": input_spikes / (N * n_in * T),
            "input_sparsity": 1.0 - input_spikes / (N * n_in * T),
            "synops_effective": int(per_source @ mask.sum(axis=0)) / N,
            "synops_dense": input_spikes * n / N,
            "dense_ops": n_in * n * T,
            "neuron_updates": updates,
            "neuron_updates_active": active / N,
            "neuron_updates_idle": (updates * N - active) / N,
            "spikes": spikes / N,
            "firing_rate": spikes / (N * n * T),
            "ann_macs": n_in * n,
            "memory_weight_bits": n_in * n * int(layer.weight_bits),
            "memory_state_bits": n * STATE_BITS,
        })
        src = out
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


def neurobench_metrics(counts: dict) -> dict:
    """The counts under NeuroBench's metric names (per inference).

    footprint: bytes of weights (at their trained bit width) plus neuron state (u, v: 24 bits each);
    activation_sparsity: zero fraction of all spiking layers' outputs; synaptic_operations: Effective_MACs
    (0: every layer's input is binary spikes), Effective_ACs (= synops_effective) and Dense
    (n_in * n * T per layer: every activation and every synapse, as NeuroBench defines it).
    """
    t = counts["total"]
    return {
        "footprint": t["memory_bytes"],
        "activation_sparsity": t["activation_sparsity"],
        "synaptic_operations": {"Effective_MACs": 0.0, "Effective_ACs": t["synops_effective"],
                                "Dense": float(t["dense_ops"])},
    }


# ---------------------------------------------------------------------------------------------------
# Energy
# ---------------------------------------------------------------------------------------------------

def _layer_parts(layer: dict, table: dict) -> dict:
    if table["kind"] == "ann":
        return {"mac": layer["ann_macs"] * table["mac_pJ"]}
    return {"synop": layer["synops_effective"] * table["synop_pJ"],
            "neuron_update_active": layer["neuron_updates_active"] * table["neuron_update_active_pJ"],
            "neuron_update_idle": layer["neuron_updates_idle"] * table["neuron_update_idle_pJ"],
            "spike": layer["spikes"] * table["spike_pJ"]}


def energy(counts: dict, table: dict) -> dict:
    """Estimated energy per inference, per layer and in total (pJ and uJ), with the table's name and label.

    snn tables: synops_effective * synop_pJ + active updates * neuron_update_active_pJ
    + idle updates * neuron_update_idle_pJ + spikes * spike_pJ; ann tables: ann_macs * mac_pJ.
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
    """Markdown table: energy per inference of each ``energy()`` result and its ratio to the first."""
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


def energy_bar_chart(results: list, path) -> None:
    """One bar per target (estimated uJ per inference, log scale), labelled; PNG written atomically."""
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
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
