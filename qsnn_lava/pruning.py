"""Structured pruning that physically shrinks a QSNN (QP-SNN Sec. 4.2, Eqs. 11-13, Alg. 1).

Workflow (``qsnn-lava prune``, ``cli.cmd_prune``): score every output channel (conv layers) or neuron
(dense layers) of each prunable layer on a few batches of training input, remove the lowest-scoring
fraction, rebuild a smaller QSNN from sliced latent weights, fine-tune it, save it. See docs/pruning.md.

Scores are taken on the eval (integer, deployed) forward of the model, per batch; a layer's score is the
mean over batches. ``v~`` below is the membrane before the reset (QP-SNN's U~), in the neuron's internal
units divided by 64 (i.e. weight-mantissa units); spike maps are a channel's [T, H, W] spikes.

  svs (conv)   the singular value score, Eqs. 11-13: per sample, the numerical rank of the channel's
               time-averaged spike map (1/T) sum_t S[t] ([H, W]), counting singular values > 1e-6;
               averaged over the samples.
  svs (dense)  a neuron's map is 1 x 1, so the literal rank is only "fired at all or not". We use the
               numerical rank of the [T, T] matrix of the neuron's spike trains on T different samples
               (time x samples, the dense stand-in for the [H, W] map), averaged over disjoint groups of T
               consecutive samples of each batch (one group of all samples if the batch has fewer than T).
               Like the conv score it counts linearly independent response patterns, i.e. how much the
               neuron's output varies with the input, bounded by T; a silent or input-independent neuron
               scores 0 or 1.
  sca          Li et al. (ICML 2024) as QP-SNN writes it: (1/(B T)) sum_b sum_t ||v~[t]||_1 over the channel's
               map (a neuron: |v~[t]|).
  random       a seeded uniform [0, 1) vector per batch (its mean is the score): the chance baseline.

Ties are broken by index: of equal scores, the higher-indexed channel is removed first.

Which channels can be removed:
  * every layer with learned synapses (QuantDense, QuantConv) except the last (the classifier's outputs);
  * pooling layers (SumPool) follow their input's channels;
  * a residual identity skip ties a block's output channels to its source's channel for channel, so the
    layers it connects form one group (resnet: {stem, res1b} and {down, res2b}); a group is pruned as one,
    scored by the sum of its members' scores, and takes one ratio. Groups are ordered by their first layer.
A group with a skip from the network input is not prunable (the input is fixed).

Slicing: each removed channel/neuron drops its output row of the layer's latent weight (and BatchNorm
weight, bias, running mean, running var); every consumer drops the matching inputs: the next conv's input
channels, or, for a dense layer after a map, the removed channels' H*W columns of the flattened input.
Everything else (other parameters, buffers, quantizer state) is copied. The quantized weights of the kept
channels are the same as before except where the quantizer or the BatchNorm bias exponent depends on the
whole layer (ReScaW's gamma, the per-layer bias exponent): those are recomputed for the smaller layer.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from . import dynamics as dyn
from .errors import QsnnError
from .ir import INPUT, Network
from .metrics import model_size, synops_per_layer
from .models import QSNN, IdentitySkip, QuantConv, QuantDense, QuantSynapse, SumPool, build_model

CRITERIA = ("svs", "sca", "random")
EPS = 1e-6  # QP-SNN's tolerance for a nonzero singular value


# ---------------------------------------------------------------- structure
def prunable_groups(model: QSNN) -> list[list[str]]:
    """Layer names whose output channels are pruned together, one list per group, in network order.

    ``model``: a QSNN. Every layer with learned synapses except the last is a candidate; layers tied by
    an identity skip form one group; a group tied to the network input is left out (module docstring)."""
    layers = list(model.layers)
    names = [layer.name for layer in layers]
    candidates = [layer.name for layer in layers[:-1] if isinstance(layer.synapse, QuantSynapse)]
    parent = {n: n for n in names + [INPUT]}

    def find(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for layer in layers:
        for src, m in zip(layer.skip_sources, layer.skips):
            if isinstance(m, IdentitySkip):
                parent[find(layer.name)] = find(src)
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(find(layer.name), []).append(layer.name)
    out = []
    for root, members in groups.items():
        if root == INPUT or find(INPUT) == root:
            continue
        if all(m in candidates for m in members):
            out.append(members)
    out.sort(key=lambda g: names.index(g[0]))
    return out


def _width(model: QSNN, name: str) -> int:
    return int(_layer(model, name).synapse.weight.shape[0])


def _layer(model: QSNN, name: str):
    return next(layer for layer in model.layers if layer.name == name)


def check_ratios(ratios) -> list[float]:
    """Validate pruning ratios: ``ratios`` (one number or a sequence; each the fraction of a layer's channels
    removed) -> list of floats, each in [0, 1). QsnnError naming the bad value otherwise."""
    if isinstance(ratios, (int, float)):
        ratios = [ratios]
    ratios = list(ratios)
    if not ratios:
        raise QsnnError("the ratio list is empty: give one ratio, or one per prunable layer")
    out = []
    for r in ratios:
        try:
            r = float(r)
        except (TypeError, ValueError):
            raise QsnnError(f"ratio '{r}' is not a number") from None
        if not (0.0 <= r < 1.0) or math.isnan(r):
            raise QsnnError(f"ratio {r} is outside [0, 1): it is the fraction of channels removed")
        out.append(r)
    return out


def plan(model: QSNN, ratios) -> list[dict]:
    """Validate ``ratios`` against ``model`` (a QSNN): a number applies to every prunable group, a list gives one
    ratio (fraction of channels removed, in [0, 1)) per group in order.

    Returns per group {"layers", "width" (channels or neurons), "ratio", "remove", "keep" (counts)};
    QsnnError when a ratio is out of range or would remove every channel of a layer."""
    groups = prunable_groups(model)
    if not groups:
        raise QsnnError(f"this {model.config['arch']} network has no prunable layer (only the output layer, "
                        "whose outputs are never pruned)")
    scalar = isinstance(ratios, (int, float))
    ratios = check_ratios(ratios)
    if scalar:
        ratios = ratios * len(groups)
    if len(ratios) != len(groups):
        raise QsnnError(f"{len(ratios)} ratios given for {len(groups)} prunable layers "
                        f"({', '.join('+'.join(g) for g in groups)}); give one ratio or one per layer")
    out = []
    for g, r in zip(groups, ratios):
        n = _width(model, g[0])
        remove = int(math.floor(r * n + 0.5))  # QP-SNN Alg. 1: keep n - round(r n)
        if n - remove < 1:
            kind = "neurons" if isinstance(_layer(model, g[0]).synapse, QuantDense) else "channels"
            raise QsnnError(f"ratio {r} would remove all {n} {kind} of layer {'+'.join(g)}; use a smaller ratio")
        out.append({"layers": list(g), "width": n, "ratio": r, "remove": remove, "keep": n - remove})
    return out


# ---------------------------------------------------------------- recording and scores
def _lif_trace(a: torch.Tensor, p: dyn.LIFParams):
    """Spikes and the pre-reset membrane v~ [T, ...] of the integer LIF (dyn.lif_step, step by step)."""
    state, probe = dyn.lif_init(a.shape[1:], a), {}
    spikes, vpre = torch.empty_like(a), torch.empty_like(a)
    for t in range(a.shape[0]):
        spikes[t], state = dyn.lif_step(a[t], state, p, probe=probe)
        vpre[t] = probe["v_pre_reset"]
    return spikes, vpre


def record(model: QSNN, x: np.ndarray) -> dict:
    """Spikes and pre-reset membranes of every layer of ``model`` (a QSNN, run in eval mode: the integer,
    deployed forward) on input spikes ``x`` [T, N, n_in] (0/1).

    Returns {layer name: (spikes, v~)}, each a tensor [T, N, *out_shape]; v~ in the neuron's internal units
    (64 x weight-mantissa units)."""
    model.eval()
    s = torch.from_numpy(np.asarray(x).astype(np.int64))
    outputs, rec = {INPUT: s}, {}
    with torch.no_grad():
        for layer in model.layers:
            a, bias = layer.synaptic_input(s, outputs)
            s, vpre = _lif_trace(a, layer.neuron.params(bias))
            outputs[layer.name] = s
            rec[layer.name] = (s, vpre)
    return rec


def svs_map_score(spikes: torch.Tensor) -> torch.Tensor:
    """QP-SNN Eq. 13 for conv spikes ``spikes`` [T, N, C, H, W] (0/1): per channel, the mean over the N samples
    of the numerical rank (singular values > 1e-6) of the time-averaged map (1/T) sum_t S[t]. Returns [C]
    (float64, a rank: 0 .. min(H, W))."""
    m = spikes.to(torch.float64).mean(0)
    sv = torch.linalg.svdvals(m)  # [N, C, min(H, W)]
    return (sv > EPS).sum(-1).to(torch.float64).mean(0)


def svs_dense_score(spikes: torch.Tensor) -> torch.Tensor:
    """The dense stand-in for Eq. 13, for spikes ``spikes`` [T, N, n] (0/1): per neuron, the mean over groups
    of T consecutive samples of the numerical rank of the [T, T] (time x samples) spike matrix (one group of
    all samples when N < T). Returns [n] (float64, a rank: 0 .. T)."""
    T, N, n = spikes.shape
    g = N // T
    if g == 0:
        mats = spikes.permute(2, 0, 1)[None]  # [1, n, T, N]
    else:
        mats = spikes[:, :g * T].reshape(T, g, T, n).permute(1, 3, 0, 2)  # [g, n, T(time), T(samples)]
    sv = torch.linalg.svdvals(mats.to(torch.float64))
    return (sv > EPS).sum(-1).to(torch.float64).mean(0)


def sca_score(vpre: torch.Tensor) -> torch.Tensor:
    """The SCA score (Li et al., ICML 2024, as QP-SNN writes it) of pre-reset membranes ``vpre`` [T, N, C, H, W]
    or [T, N, n]: (1/(N T)) sum_n sum_t ||v~[t]||_1 over each channel's map (a neuron: |v~[t]|), in
    weight-mantissa units (v~ / 64). Returns [C] or [n] (float64)."""
    a = vpre.abs().to(torch.float64) / (1 << dyn.ACT_SHIFT)
    if a.dim() == 5:
        a = a.sum((3, 4))
    return a.mean((0, 1))


def layer_score(criterion: str, spikes: torch.Tensor, vpre: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One layer's score per channel/neuron on one batch, by ``criterion`` ("svs", "sca" or "random").

    ``spikes``, ``vpre``: the layer's spikes and pre-reset membranes [T, N, ...] (``record``); ``gen``: the
    torch Generator the "random" criterion draws its uniform [0, 1) scores from. Returns [C] (float64);
    QsnnError for an unknown criterion."""
    if criterion == "svs":
        return svs_map_score(spikes) if spikes.dim() == 5 else svs_dense_score(spikes)
    if criterion == "sca":
        return sca_score(vpre)
    if criterion == "random":
        return torch.rand(spikes.shape[2], generator=gen, dtype=torch.float64)
    raise QsnnError(f"unknown pruning criterion '{criterion}' (known: {', '.join(CRITERIA)})")


def score_channels(model: QSNN, batches: list, criterion: str, seed: int = 0) -> list[dict]:
    """Score every prunable group's channels of ``model`` (a QSNN) on ``batches`` by ``criterion``.

    ``batches``: input spike arrays [T, N, n_in] (0/1); ``criterion``: "svs", "sca" or "random";
    ``seed``: the random criterion's seed. A group's score is the sum of its members' scores. Returns per
    group {"layers", "per_batch": [B, C] array, "score": [C] (mean over batches)}."""
    if criterion not in CRITERIA:
        raise QsnnError(f"unknown pruning criterion '{criterion}' (known: {', '.join(CRITERIA)})")
    if not batches:
        raise QsnnError("no batches to score on")
    groups = prunable_groups(model)
    gen = torch.Generator().manual_seed(int(seed))
    per_batch = [[] for _ in groups]
    for x in batches:
        rec = record(model, x)
        for gi, g in enumerate(groups):
            per_batch[gi].append(sum(layer_score(criterion, *rec[name], gen) for name in g).numpy())
    return [{"layers": list(g), "per_batch": np.stack(pb), "score": np.stack(pb).mean(0)}
            for g, pb in zip(groups, per_batch)]


def stability(per_batch: np.ndarray) -> float:
    """Mean cosine similarity between the score vectors of different batches (QP-SNN Fig. 4's measure).

    ``per_batch``: [B, C] scores (``score_channels``). Two all-zero vectors count as identical (1), one zero
    vector against a nonzero one as 0. Returns a float in [-1, 1]; NaN for fewer than two batches."""
    b = np.asarray(per_batch, np.float64)
    if len(b) < 2:
        return float("nan")
    sims = []
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            na, nb = np.linalg.norm(b[i]), np.linalg.norm(b[j])
            sims.append(1.0 if na == 0 and nb == 0 else 0.0 if na == 0 or nb == 0 else float(b[i] @ b[j] / (na * nb)))
    return float(np.mean(sims))


def keep_indices(score: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` highest entries of ``score`` ([C], any units), ascending; of equal scores the
    lower index is kept."""
    score = np.asarray(score, np.float64)
    order = np.lexsort((np.arange(len(score)), -score))  # best first; equal scores by index
    return np.sort(order[:keep])


# ---------------------------------------------------------------- pruning
def prune_model(model: QSNN, scores: list[dict], ratios) -> tuple[QSNN, list[dict]]:
    """A new, smaller QSNN without the lowest-scoring fraction of each group's channels.

    ``model``: the QSNN to prune (left unchanged); ``scores``: from ``score_channels`` (or any list of
    {"layers", "score"} in ``prunable_groups`` order); ``ratios``: the fraction of channels removed, one for
    all groups or one per group. Returns (model in eval mode, ``plan`` with "kept": the kept indices)."""
    groups = plan(model, ratios)
    if [g["layers"] for g in groups] != [list(s["layers"]) for s in scores]:
        raise QsnnError("the scores do not belong to this model's prunable layers")
    out_keep: dict[str, np.ndarray] = {}
    for g, s in zip(groups, scores):
        if len(s["score"]) != g["width"]:
            raise QsnnError(f"layer {'+'.join(g['layers'])} has {g['width']} channels but {len(s['score'])} scores")
        g["kept"] = keep_indices(s["score"], g["keep"])
        for name in g["layers"]:
            out_keep[name] = g["kept"]

    cfg = copy.deepcopy(model.config)
    if cfg["arch"] == "mlp":
        sizes = list(cfg["sizes"])
        for i, layer in enumerate(model.layers):
            if layer.name in out_keep:
                sizes[i + 1] = int(len(out_keep[layer.name]))
        cfg["sizes"] = sizes
    else:
        widths = dict(cfg.get("widths") or {})
        widths.update({name: int(len(k)) for name, k in out_keep.items()})
        cfg["widths"] = widths

    # which channels each layer keeps at its output (None: all), following pools through
    keeps, prev = [], None
    for layer in model.layers:
        if layer.name in out_keep:
            keeps.append(torch.as_tensor(out_keep[layer.name], dtype=torch.long))
        elif isinstance(layer.synapse, SumPool):
            keeps.append(prev)
        else:
            keeps.append(None)
        prev = keeps[-1]
    for layer, k in zip(model.layers, keeps):
        for src, m in zip(layer.skip_sources, layer.skips):
            src_keep = None if src == INPUT else keeps[[x.name for x in model.layers].index(src)]
            same = (k is None and src_keep is None) or (k is not None and src_keep is not None
                                                        and torch.equal(k, src_keep))
            if not (isinstance(m, IdentitySkip) and same):
                raise QsnnError(f"layer {layer.name}: cannot prune across its skip from {src}")

    state = {}
    for key, v in model.state_dict().items():
        parts = key.split(".")
        if parts[0] != "layers":
            state[key] = v.clone()
            continue
        i, rest = int(parts[1]), ".".join(parts[2:])
        out_k = keeps[i]
        in_k = keeps[i - 1] if i > 0 else None
        if rest == "synapse.weight":
            w = v if out_k is None else v[out_k]
            if in_k is not None:
                if isinstance(model.layers[i].synapse, QuantConv):
                    w = w[:, in_k]
                else:  # dense after a map (flattened C, H, W) or after dense neurons (hw = 1)
                    hw = int(np.prod(model.layers[i - 1].out_shape[1:]))  # (n,) -> 1
                    cols = (in_k[:, None] * hw + torch.arange(hw)[None]).flatten()
                    w = w[:, cols]
            state[key] = w.clone()
        elif rest in ("synapse.bn.weight", "synapse.bn.bias", "synapse.bn.running_mean", "synapse.bn.running_var"):
            state[key] = (v if out_k is None else v[out_k]).clone()
        else:
            state[key] = v.clone()
    new = build_model(cfg, state)
    return new.eval(), groups


# ---------------------------------------------------------------- summary
def summarize(net: Network, x: np.ndarray) -> dict:
    """What a network costs, per layer and in total, measured on its reference simulation.

    ``net``: the IR of the model (``converters.checkpoint.model_to_ir(model, validate=False)``; the caller
    converts, so the core never imports a converter); ``x``: input spikes [T, N, n_in]. Per layer: "name",
    "kind" (dense, conv, pool), "channels" (conv/pool) or neurons (dense), "neurons", "params" (learned
    weights), "bits" (their width; 0 without learned weights), "size_bits" (QP-SNN Eq. 16: params x bits),
    "ir_weights" (every stored synapse weight, learned and fixed), "synops" and "spikes" (per inference).
    "total" sums them and adds "size_kbytes" (size_bits / 8 / 1024); "samples" is N. Sizes come from
    ``metrics.model_size``, SynOps from ``metrics.synops_per_layer``."""
    from .reference import simulate

    x = np.asarray(x)
    rec = simulate(net, x)
    syn = synops_per_layer(net, x, rec)
    sizes = model_size(net)["layers"]
    layers = []
    for i, (layer, size) in enumerate(zip(net.layers, sizes)):
        layers.append({
            "name": layer.name, "kind": size["kind"],
            "channels": int(layer.shape[0]), "neurons": int(layer.neuron.n),
            "params": size["parameters"], "bits": size["bits"] if size["parameters"] else 0,
            "size_bits": size["size_bits"], "ir_weights": size["weights"],
            "synops": syn[i], "spikes": float(rec.spikes[i].sum(dtype=np.int64)) / x.shape[1],
        })
    keys = ("neurons", "params", "size_bits", "ir_weights", "synops", "spikes")
    total = {k: sum(layer[k] for layer in layers) for k in keys}
    total["size_kbytes"] = total["size_bits"] / 8 / 1024
    return {"layers": layers, "total": total, "samples": int(x.shape[1])}


def format_summary(before: dict, after: dict) -> str:
    """The before/after table ``qsnn-lava prune`` prints: per layer and in total, channels or neurons,
    parameters, model size (kB, QP-SNN Eq. 16), SynOps and spikes per inference, as "a -> b" where they
    changed. ``before``, ``after``: ``summarize`` results of the same layers. Returns the text."""
    rows = [("layer", "kind", "ch/neur", "params", "size kB", "SynOps", "spikes")]

    def arrow(a, b, fmt="{:d}"):
        return fmt.format(a) if a == b else f"{fmt.format(a)} -> {fmt.format(b)}"

    for a, b in zip(before["layers"], after["layers"]):
        rows.append((a["name"], a["kind"], arrow(a["channels"], b["channels"]), arrow(a["params"], b["params"]),
                     arrow(a["size_bits"] / 8192, b["size_bits"] / 8192, "{:.2f}"),
                     arrow(a["synops"], b["synops"], "{:.0f}"), arrow(a["spikes"], b["spikes"], "{:.0f}")))
    ta, tb = before["total"], after["total"]
    rows.append(("total", "", arrow(ta["neurons"], tb["neurons"]) + " neur", arrow(ta["params"], tb["params"]),
                 arrow(ta["size_kbytes"], tb["size_kbytes"], "{:.2f}"), arrow(ta["synops"], tb["synops"], "{:.0f}"),
                 arrow(ta["spikes"], tb["spikes"], "{:.0f}")))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) if c < 2 else str(v).rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------- data and the command
def subset(split, idx):
    """The samples ``idx`` (an index array or slice) of ``split`` (a ``data.Split``), levels kept."""
    from .data import Split

    return Split(split.x[idx], split.y[idx], split.levels)


def scoring_batches(data, timesteps: int, batches: int, batch_size: int, seed: int = 0,
                    input_bits: int = 1) -> list[np.ndarray]:
    """``batches`` disjoint batches of ``batch_size`` training samples of ``data`` (a ``data.Dataset``), drawn
    with ``seed``, encoded over ``timesteps`` steps with the network's input code (``input_bits`` 1: the rate
    code's 0/1 spikes; 2..8: direct input): a list of input arrays [T, batch_size, n_in]. QsnnError when the
    dataset has too few training samples."""
    from .data import encoded

    if batches < 1 or batch_size < 1:
        raise QsnnError("--batches and --batch-size must be >= 1")
    n = len(data.train.y)
    if batches * batch_size > n:
        raise QsnnError(f"{batches} batches of {batch_size} need {batches * batch_size} training samples; "
                        f"the dataset has {n}")
    idx = np.random.default_rng(seed).permutation(n)[:batches * batch_size]
    return [encoded(subset(data.train, idx[b * batch_size:(b + 1) * batch_size]), timesteps, input_bits=input_bits)[0]
            for b in range(batches)]


def parse_ratios(ratio, ratios):
    """The CLI's ratio options: ``ratios`` "a,b,..." -> [a, b, ...] (one per prunable layer, in order), else
    ``ratio`` R -> R (every prunable layer). Each a fraction of channels removed, in [0, 1)."""
    if ratios is not None:
        return check_ratios([r for r in (p.strip() for p in ratios.split(",")) if r])
    return check_ratios([ratio])[0]


def finetune(pruned: QSNN, data, epochs: int, lr: float, batch_size: int, seed: int, train_samples=None,
             epoch_offset: int = 0, progress: bool = False, device=None):
    """Fine-tune ``pruned`` (``training.train`` from its weights) on ``data`` for ``epochs`` epochs.

    ``lr``: Adam's learning rate; ``batch_size``: samples per step; ``seed``: training seed;
    ``train_samples``: train on a seeded draw of that many training samples (None: all); ``epoch_offset``:
    epochs the weights were already trained (continues the schedule); ``progress``: show a progress bar;
    ``device``: where to train (default the CPU). Returns (model, history)."""
    from .data import Dataset
    from .training import train

    if train_samples is not None and train_samples < len(data.train.y):
        idx = np.sort(np.random.default_rng(seed + 1).permutation(len(data.train.y))[:train_samples])
        data = Dataset(data.name, subset(data.train, idx), data.test, data.n_in, data.n_classes, data.shape)
    return train(pruned.config, data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                 init_state=pruned.state_dict(), epoch_offset=epoch_offset, device=device)
