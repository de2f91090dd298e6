"""What a network costs, counted once: synaptic operations (SynOps) and model size (QP-SNN Eq. 16).

Every consumer (``deploy.energy.count_ops``, the pruning summary, the benches) counts with these functions,
so their numbers cannot drift apart. All counts are on an IR ``Network``; a synapse population p (the main
synapse of a layer, a pooling layer's fixed depthwise Conv, or a skip) has source spikes s_p[t, j] and a
synapse matrix M_p [n_out, n_in] (a conv unrolled, ``converters.lava_graph.synapse_matrix``); a layer's
recurrent synapse is one more population, whose source spikes are the layer's own (``Network.populations``):
each spike of the layer is one event per nonzero recurrent synapse, counted once, whether or not the sample
has a next step to deliver it to (the synapse processes it either way)::

    fanout_p[j]  = #{i : M_p[i, j] is a synapse}    every weight that reaches input j, zeros included
    nnz_p[j]     = #{i : M_p[i, j] != 0}            nonzero weights only
    SynOps_p     = sum_t sum_j s_p[t, j] * nnz_p[j] one accumulate per (input spike, nonzero synapse) event
                   (direct input: s_p[t, j] = [x[t, j] != 0], one event per nonzero graded spike)

Model size (QP-SNN Eq. 16, M = sum_q P_q * B_q) per population, with B the layer's ``weight_bits``::

    parameters   learned weights: those of dense and conv populations (``synapse_kind``); a pool's and an
                 identity skip's fixed weights are not parameters
    size_bits    parameters * bits             (Eq. 16: the trained model)
    weights      every stored weight, zeros and fixed pool / identity weights included
    memory_bits  weights * bits                (the deployed network's weight memory; a pool at its 1 bit)
"""
from __future__ import annotations

import numpy as np

from .ir import INPUT, Network
from .reference import fanout

LEARNED_KINDS = ("dense", "conv")  # synapse kinds whose weights are trained parameters


def synapse_kind(syn) -> str:
    """What an IR synapse population is: "dense", "conv", "pool" or "identity".

    ``syn``: an ``ir.Dense`` or ``ir.Conv``. pool: a depthwise Conv (groups = C_in = C_out) with a k x k
    kernel, k > 1, stride k, no padding and every weight the same positive value (``ir.sum_pool``).
    identity: a depthwise 1x1 Conv, stride 1, no padding, one nonzero gain for all channels (the residual
    shortcut ``models.IdentitySkip``). Every other Conv is "conv".
    """
    if syn.type == "dense":
        return "dense"
    w = np.asarray(syn.weight)
    c_in, c_out = syn.in_shape[0], w.shape[0]
    depthwise = syn.groups == c_in == c_out and w.shape[1] == 1
    uniform = w.size > 0 and bool((w == w.flat[0]).all()) and w.flat[0] != 0
    if depthwise and uniform and syn.padding == (0, 0):
        kh, kw = syn.kernel
        if (kh, kw) == (1, 1) and syn.stride == (1, 1):
            return "identity"
        if kh * kw > 1 and syn.stride == (kh, kw) and w.flat[0] > 0:
            return "pool"
    return "conv"


# ---------------------------------------------------------------- SynOps
def fanouts(syn) -> tuple[np.ndarray, np.ndarray]:
    """(nnz, fanout): int64 [n_in] each, per input j of ``syn`` the synapses leaving j with a nonzero weight,
    and all synapses leaving j (zero weights included). Built on ``reference.fanout``."""
    mask = np.asarray(syn.weight) != 0
    return fanout(syn, mask), fanout(syn, np.ones_like(mask))


def synops(spikes_per_input, fan: np.ndarray):
    """Synaptic events of one population: sum_j spikes_per_input[j] * fan[j].

    ``spikes_per_input``: int [n_in], spikes of each input j (summed over whatever steps and samples the caller
    wants counted); ``fan``: int [n_in], ``fanouts(syn)[0]`` for SynOps (nonzero synapses) or ``[1]`` for the
    dense count. Returns an exact integer count (events, not per inference). A torch tensor of spike counts
    (a training forward's, with surrogate gradients) gives a float64 tensor with its gradient: the same sum,
    exact while the count stays below 2^53."""
    if not isinstance(spikes_per_input, np.ndarray) and hasattr(spikes_per_input, "grad_fn"):
        import torch

        counts = spikes_per_input.to(torch.float64)
        return counts @ torch.from_numpy(np.asarray(fan, np.int64)).to(torch.float64)
    return int(np.asarray(spikes_per_input, np.int64) @ np.asarray(fan, np.int64))


def spikes_per_source(net: Network, inputs: np.ndarray, record) -> dict:
    """{source name: int64 [n]}: spikes (events) of each neuron summed over the T steps and N samples.

    ``inputs``: input spikes [T, N, n_in] (the source ``ir.INPUT``); ``record``: a ``Record`` of ``net`` on them
    (per layer [T, N, n], zero-delay time). An input event is a nonzero input: a spike, or for direct input a
    graded spike with a nonzero payload (its value multiplies the weight; see ``deploy.energy``)."""
    out = {INPUT: (np.asarray(inputs) != 0).sum(axis=(0, 1), dtype=np.int64)}
    for layer, s in zip(net.layers, record.spikes):
        out[layer.name] = np.asarray(s).sum(axis=(0, 1), dtype=np.int64)
    return out


def synops_per_layer(net: Network, inputs: np.ndarray, record) -> list[float]:
    """SynOps per inference of each layer of ``net``: every (input spike, nonzero synapse) event of every
    population into the layer (main, pooling and skips), summed over T, mean over the N samples.

    ``inputs``: input spikes [T, N, n_in]; ``record``: a ``Record`` of ``net`` on them. Returns one float per
    layer (events per inference); ``deploy.energy.count_ops`` reports the same numbers as ``synops_effective``.
    """
    counts = spikes_per_source(net, inputs, record)
    n = np.asarray(inputs).shape[1]
    return [sum(synops(counts[src], fanouts(syn)[0]) / n for src, syn in net.populations(i))
            for i in range(len(net.layers))]


def forward_synops(model, inputs, outputs) -> list:
    """SynOps of each layer in ONE forward of a torch ``models.QSNN``, summed over T and the batch: the rule of
    ``synops_per_layer`` applied to the forward's own spikes, for the activity regulariser (``training``).

    ``inputs``: the forward's input [T, B, n_in] (an input event is a nonzero value, as ``spikes_per_source``);
    ``outputs``: the forward's list of layer spikes [T, B, n] (training mode: float with surrogate gradients).
    Each population's nnz comes from ``fanouts`` of its IR synapse (``to_ir()``: the integer weights the model
    deploys), so in eval mode the counts equal ``synops_per_layer`` on the reference's Record of the same inputs
    times B, exactly. Returns one float64 tensor per layer; its gradient reaches the spikes (d/ds_j = nnz_j;
    the zero pattern of the weights is a constant). In training mode the count is exact for straight-through
    quantizers without BatchNorm; BatchNorm (batch statistics) and the sigmoid quantizers' soft staircase make
    the training forward's weights differ from the deployed ones, and the count follows the training spikes.
    """
    import torch

    spikes = {INPUT: (inputs != 0).sum((0, 1)).to(torch.float64)}
    spikes.update({layer.name: out.sum((0, 1)) for layer, out in zip(model.layers, outputs)})
    per_layer = []
    for i, layer in enumerate(model.layers):
        main = INPUT if i == 0 else model.layers[i - 1].name
        pops = [(main, layer.synapse), *zip(layer.skip_sources, layer.skips)]
        per_layer.append(sum(synops(spikes[src].to(torch.float64), fanouts(m.to_ir())[0]) for src, m in pops))
    return per_layer


# ---------------------------------------------------------------- model size
def population_size(syn, bits: int) -> dict:
    """Size of one synapse population stored at ``bits`` per weight (module docstring): {"kind", "weights",
    "parameters", "memory_bits", "size_bits"}; counts are weights, sizes bits."""
    kind = synapse_kind(syn)
    weights = int(np.asarray(syn.weight).size)
    params = weights if kind in LEARNED_KINDS else 0
    return {"kind": kind, "weights": weights, "parameters": params,
            "memory_bits": weights * int(bits), "size_bits": params * int(bits)}


def model_size(net: Network) -> dict:
    """QP-SNN Eq. 16 model size of ``net``, per layer and in total.

    Returns {"layers": [{"name", "kind" (of the main synapse), "bits" (the layer's weight_bits), "weights",
    "parameters", "memory_bits", "size_bits"}], "total": {"weights", "parameters", "memory_bits", "size_bits",
    "size_kbytes", "memory_kbytes"}} (kbytes = bits / 8 / 1024). Sums run over every population of a layer.
    """
    keys = ("weights", "parameters", "memory_bits", "size_bits")
    layers = []
    for i, layer in enumerate(net.layers):
        pops = [population_size(syn, layer.weight_bits) for _, syn in net.populations(i)]
        row = {"name": layer.name, "kind": pops[0]["kind"], "bits": int(layer.weight_bits)}
        row.update({k: sum(p[k] for p in pops) for k in keys})
        layers.append(row)
    total = {k: sum(row[k] for row in layers) for k in keys}
    total["size_kbytes"] = total["size_bits"] / 8 / 1024
    total["memory_kbytes"] = total["memory_bits"] / 8 / 1024
    return {"layers": layers, "total": total}
