"""Design-rule check against Loihi 2's limits, listing every violation (layer, field, value, limit).

The register widths are checked by the IR itself (``Network.violations``, one source of truth); this adds
the rules that concern the chip as a whole, and formats the result for manifests and terminals.
"""
from __future__ import annotations

from dataclasses import asdict

from qsnn_lava.bounds import static_bounds
from qsnn_lava.ir import Network

NATIVE_NEURONS = {"lif": "CUBA LIF (native Loihi 2 neuron)",
                  "readout": "CUBA LIF at the largest threshold, proven never to fire (its voltage is read)"}
RULES = [
    "weights: at most 8-bit mantissa with sign mode (one sign: |w| <= 255; mixed: [-128, 127] or even "
    "values in [-256, 254]) and a per-layer exponent in [-8, 7]",
    "vth: 17-bit unsigned mantissa", "bias: 13-bit signed mantissa, 3-bit unsigned exponent",
    "du, dv: 12-bit", "delays: 6-bit (only skip connections use delays, at most 62 steps)",
    "state: u and v 24-bit (wrap / saturation is legal; see the overflow check)",
    "synaptic input << 6 must fit Lava's 32-bit current update",
    "neuron types the chip runs natively",
    "a readout (non-spiking) layer: its static |v| bound below the largest threshold (vth 2^17 - 1) << 6",
]


def design_rule_check(net: Network, cpu: bool = False) -> dict:
    """Check ``net`` against Loihi 2's design rules (``RULES``): every register-limit violation the IR reports
    (``Network.violations``) and every neuron type the chip does not run natively.

    ``cpu``: the network is bundled for Lava's CPU models, so CPU-only neuron types are allowed and only
    listed under ``cpu_only``. Returns {"passed", "violations" (dicts: where, field, value, lo, hi, fix),
    "rules", "cpu_only" (layer names), "overflow" (``bounds.static_bounds`` when passed, else None)}."""
    violations = [asdict(v) for v in net.violations()]
    cpu_only = [layer.name for layer in net.layers if layer.neuron.type not in NATIVE_NEURONS]
    for i, layer in enumerate(net.layers):
        if layer.neuron.type not in NATIVE_NEURONS and not cpu:
            violations.append({"where": f"layer {i} ({layer.name})", "field": "neuron type",
                               "value": layer.neuron.type, "lo": None, "hi": None,
                               "fix": "CPU-only neuron model: deploy with --target cpu"})
    return {"passed": not violations, "violations": violations, "rules": RULES, "cpu_only": cpu_only,
            "overflow": static_bounds(net) if not violations else None}


def format_violations(drc: dict) -> str:
    """The violations of ``drc`` (``design_rule_check``'s result) as text, one indented line each: where,
    field, value, the limit and the fix."""
    lines = []
    for v in drc["violations"]:
        limit = f"[{v['lo']}, {v['hi']}]" if v["lo"] is not None else "not native"
        lines.append(f"  {v['where']}: {v['field']} = {v['value']} (limit {limit}); {v['fix']}")
    return "\n".join(lines)
