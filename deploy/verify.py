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
    return LABELS.get(backend, backend)


def compare(a: Record, b: Record) -> dict:
    """Mismatch counts per layer and in total, and the first divergence in (sample, time) order."""
    n = min(a.samples, b.samples)
    per_layer, first = {}, None
    for li, (name, sa, sb) in enumerate(zip(a.layer_names, a.spikes, b.spikes)):
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
    """Accuracy of each backend and the comparison of each consecutive pair, as the report dict."""
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
