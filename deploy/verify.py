"""Spike-by-spike comparison of backends on the same inputs.

Records are in zero-delay time (the Lava backend already removed its per-layer delay), so events are
compared directly per (sample, layer, neuron, timestep). A mismatch is one such event that differs.
"""
from __future__ import annotations

import numpy as np

from qsnn_lava.record import Record

# How a backend is named in reports: the torch model in eval mode is "the trained network".
LABELS = {"torch": "trained"}


def label(backend: str) -> str:
    """How ``backend`` (a Record's backend name) is named in reports: "torch" is "trained", others as they are."""
    return LABELS.get(backend, backend)


def compare(a: Record, b: Record) -> dict:
    """Spike-by-spike comparison of Records ``a`` and ``b`` over the samples both hold (zero-delay time).

    Returns {"samples", "mismatches" (differing (sample, layer, neuron, step) events), "per_layer" (name ->
    mismatches), "first_divergence"}: the earliest mismatch in (sample, step) order as {"sample", "timestep",
    "layer", "layer_index", "neuron", and each side's spike (0/1) under its label}, or None. A readout layer
    (``ir.Readout``) is compared by its voltage: a mismatch is a step whose integer v differs (the divergence
    then holds each side's v)."""
    n = min(a.samples, b.samples)
    per_layer, first = {}, None
    for li, (name, sa, sb) in enumerate(zip(a.layer_names, a.spikes, b.spikes)):
        if name in a.voltages or name in b.voltages:  # a readout: its voltage is its output
            sa, sb = a.voltages.get(name, sa), b.voltages.get(name, sb)
        diff = sa[:, :n] != sb[:, :n]
        per_layer[name] = int(diff.sum())
        if per_layer[name]:
            t, k, j = np.nonzero(diff)
            i = np.lexsort((j, t, k))[0]  # earliest sample, then step, then neuron
            key = (int(k[i]), int(t[i]), li, int(j[i]))
            if first is None or key < first[0]:
                first = (key, int(sa[t[i], k[i], j[i]]), int(sb[t[i], k[i], j[i]]))
    if first is not None:
        (k, t, li, j), va, vb = first
        first = {"sample": k, "timestep": t, "layer": a.layer_names[li], "layer_index": li, "neuron": j,
                 label(a.backend): va, label(b.backend): vb}
    return {"samples": n, "mismatches": int(sum(per_layer.values())), "per_layer": per_layer,
            "first_divergence": first}


def report(records: list[Record], labels: np.ndarray) -> dict:
    """The verify report of ``records`` (Records of several backends on the same inputs) with true class
    ``labels`` [N]: accuracy per backend (fraction correct), the comparison of each consecutive pair, sample
    counts, wall seconds per backend and "equivalent" (no mismatch in any pair)."""
    acc = {label(r.backend): r.accuracy(labels) for r in records}
    comparisons = {f"{label(a.backend)}_vs_{label(b.backend)}": compare(a, b)
                   for a, b in zip(records[:-1], records[1:])}
    return {
        "accuracy": acc,
        "spike_mismatches": {k: c["mismatches"] for k, c in comparisons.items()},
        "samples": min(r.samples for r in records),
        "samples_per_backend": {label(r.backend): r.samples for r in records},
        "comparisons": comparisons,
        "seconds": {label(r.backend): round(r.info.get("seconds", 0.0), 4) for r in records},
        "equivalent": all(c["mismatches"] == 0 for c in comparisons.values()),
    }


CAUSES = ("24-bit wrap of u", "voltage saturation", "rounding of decay", "weight exponent",
          "threshold comparison", "reset", "delay offset", "synaptic input (weights)", "unknown")


def likely_cause(ua, va, ub, vb, vth: int, t: int) -> str:
    """Best guess (one of ``CAUSES``) at why neuron traces a and b lead to different spikes at step ``t``.

    ``ua, va, ub, vb``: u and v [T] of the neuron on each side (internal units); ``vth``: its threshold
    mantissa (internal threshold vth << 6). The first divergence is the earliest differing spike, so the
    layer's inputs agreed up to ``t``: the difference is in this layer's own arithmetic or parameters."""
    from qsnn_lava.dynamics import UV_MAX, V_LIMIT

    du, dv = np.nonzero(ua != ub)[0], np.nonzero(va != vb)[0]
    if du.size == 0 and dv.size == 0:
        return "threshold comparison" if (va[t] == vth << 6 or vb[t] == vth << 6) else "unknown"
    if du.size and (dv.size == 0 or du[0] <= dv[0]):
        k = du[0]
        d = int(ub[k]) - int(ua[k])
        if abs(d) == 2 * UV_MAX or max(abs(int(ua[k])), abs(int(ub[k]))) >= UV_MAX - (1 << 16):
            return "24-bit wrap of u"
        if (k + 1 < len(ua) and ub[k] == ua[k + 1]) or (k > 0 and ub[k] == ua[k - 1]):
            return "delay offset"
        if ua[k] and ub[k] and ua[k] % 2 == 0 and ub[k] % 2 == 0:
            r = abs(int(ub[k]) / int(ua[k]))
            if r != 1 and np.log2(r).is_integer():
                return "weight exponent"
        if abs(d) <= 1:
            return "rounding of decay"
        return "synaptic input (weights)"
    k = dv[0]
    if max(abs(int(va[k])), abs(int(vb[k]))) >= V_LIMIT:
        return "voltage saturation"
    if 0 in (int(va[k]), int(vb[k])) and k > 0:
        return "reset"
    if abs(int(vb[k]) - int(va[k])) <= 1:
        return "rounding of decay"
    return "unknown"


def diagnose(net, spikes: np.ndarray, first: dict, trace_a, trace_b, window: int = 3) -> dict:
    """u/v traces of the first diverging neuron on both sides around the divergence, and a likely cause.

    ``net``: the IR; ``spikes``: the inputs [T, N, n_in]; ``first``: ``compare``'s "first_divergence";
    ``trace_a``, ``trace_b``: ``trace(net, spikes [T, 1, n_in], layer_index) -> (u, v) [T, n]`` of each side;
    ``window``: steps shown on each side of the divergence. Returns {"steps", "a", "b" ({"u", "v"} lists,
    internal units), "vth_internal", "likely_cause"}."""
    k, li, j, t = first["sample"], first["layer_index"], first["neuron"], first["timestep"]
    one = spikes[:, k:k + 1]
    (ua, va), (ub, vb) = trace_a(net, one, li), trace_b(net, one, li)
    ua, va, ub, vb = ua[:, j], va[:, j], ub[:, j], vb[:, j]
    lo, hi = max(0, t - window), min(net.timesteps, t + window + 1)
    return {"steps": list(range(lo, hi)),
            "a": {"u": ua[lo:hi].tolist(), "v": va[lo:hi].tolist()},
            "b": {"u": ub[lo:hi].tolist(), "v": vb[lo:hi].tolist()},
            "vth_internal": net.layers[li].neuron.vth << 6,
            "likely_cause": likely_cause(ua, va, ub, vb, net.layers[li].neuron.vth, t)}
