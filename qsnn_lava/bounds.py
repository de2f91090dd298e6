"""Where a network can leave Loihi's 24-bit state: a static bound from the weights, and runtime counts.

Static bound per layer, over one sample window of T steps, from |rtz(x)| <= |x|:
    A     = max over neurons of max(sum of positive, -sum of negative) weights, times the source's largest
            value (1 for spikes, 2^b - 1 for b-bit direct input), after weight_exp
            (summed over a layer's synapse populations: skips and a recurrent synapse included, since
            the recurrent input at any step is at most its own row sums however the layer fired)
    |u_t| <= r_u |u_{t-1}| + 64 A           r_u = (4096 - du - 1) / 4096
    |v_t| <= r_v |v_{t-1}| + |u_t| + |b|    r_v = (4096 - dv) / 4096
so u_max = 64 A sum_{k<T} r_u^k and v_max = sum_{k<T} r_v^k (u_max + b_max). Resets only lower |v|.
u can wrap when u_max reaches 2^23; v can saturate when v_max reaches 2^23 - 1. The bound is
conservative: a flagged layer may never overflow on real data, which the runtime counters (reference
simulator) show. Where it proves a layer safe, the reference skips that layer's wrap and saturation.
"""
from __future__ import annotations

import numpy as np

from .dynamics import UV_MAX, V_LIMIT, lif_bound
from .ir import Network, max_input


def static_bounds(net: Network) -> dict:
    """The static bound of every layer of ``net`` over one window of T steps (module docstring).

    Returns {layer name: {"u_bound", "v_bound" (int, the largest |u| and |v| the weights and biases allow,
    in internal units), "u_can_wrap", "v_can_saturate" (bool: the bound reaches the 24-bit limit)}}."""
    out = {}
    T = net.timesteps
    for i, layer in enumerate(net.layers):
        n = layer.neuron
        # skips and recurrence add their worst case; the network input sends values up to net.input_max
        a_max = sum(max_input(syn, net.source_max(src)) for src, syn in net.populations(i))
        b_max = int(np.abs(n.bias_mant).max()) << n.bias_exp if n.bias_mant.size else 0
        u_max, v_max = lif_bound(int(a_max), b_max, n.du, n.dv, T)  # exact rationals, rounded up
        # u wraps at u > 2^23 or u <= -2^23; the margin of 2 is conservative
        out[layer.name] = {"u_bound": int(u_max), "v_bound": int(v_max), "u_can_wrap": u_max >= UV_MAX - 2,
                           "v_can_saturate": v_max >= V_LIMIT - 2}
    return out


def flagged(bounds: dict) -> list[str]:
    """Names of the layers in ``bounds`` (``static_bounds``'s result) whose u may wrap or v may saturate."""
    return [name for name, b in bounds.items() if b["u_can_wrap"] or b["v_can_saturate"]]
