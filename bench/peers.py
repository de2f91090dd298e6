"""Our exact integer reference and QAT training step against snnTorch and SpikingJelly, in one run.

Inference: the dense digits net (64-256-10) and the Fashion conv net (vgg 16-32 on 1x28x28, as
bench/fashion_mnist.py builds it), untrained (seeded random init: speed does not depend on training),
T = 8 and 4, N = 360 and 4,096 samples of the same input spikes (digits / Fashion-MNIST test images, rate
coded, repeated up to N). Contenders, all on the same weights, batch size and inputs:
  * ours: ``reference.simulate`` (exact integers; every layer's spikes come back as uint8 arrays),
  * snnTorch ``Leaky`` (float32, no grad; synapses applied to all T steps at once, the neuron looped),
  * SpikingJelly ``LIFNode`` (float32, no grad, multi-step, torch on CPU).
The peers get the integer weights as floats, the bias in weight units, threshold vth, beta = 1 - dv/4096
(tau = 1 / (1 - beta), no input decay), reset to zero; the spike max-pool layers (vth 0) are MaxPool2d of
spikes. Training: steps/s (forward, backward, Adam step) of ``models.QSNN`` in train mode (QAT: exact
integer dynamics, straight-through rounding) against snnTorch BPTT of the same shapes (BatchNorm in the
conv net, as ours folds), batch 64, T = 4 and 8.

Timing: every contender runs once per round, rounds interleaved, best of ``--repeats`` (the CPU is shared);
each peer runs with the torch thread count (1 or 2) it was faster with on a first batch (on a busy 2-core
machine one thread often wins); our reference uses its defaults (sample shards on all torch threads), our
training step the faster thread count like snnTorch's.
Prints JSON with samples/s and the ratios ours / best peer, writes bench/results/peers.json and the tables
into docs/benchmarks.md (between the ``peers`` markers). Needs the ``peers`` extra
(``pip install -e .[peers]``: snntorch, spikingjelly). Usage: python bench/peers.py [--quick]
"""
import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import save_result  # the sibling bench/common.py
from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.dynamics import ACT_SHIFT, DECAY_UNITY
from qsnn_lava.io import atomic_write
from qsnn_lava.models import build_model, make_config
from qsnn_lava.reference import simulate

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- peers:begin (bench/peers.py writes this part) -->", "<!-- peers:end -->"


def config(kind: str, T: int) -> dict:
    """The model config of the ``kind`` ("dense" or "conv") network at ``T`` steps."""
    if kind == "dense":
        return make_config(timesteps=T)
    return make_config(arch="vgg", sizes=[784, 10], input_shape=(1, 28, 28), channels=[16, 32], timesteps=T)


def network(kind: str, T: int):
    """(seeded random-init QSNN in eval mode, its IR)."""
    torch.manual_seed(0)
    model = build_model(config(kind, T))
    model.eval()
    return model, model_to_ir(model)


def inputs(kind: str, T: int, n: int) -> np.ndarray:
    """Rate-coded test images [T, n, n_in] (uint8), the test set repeated up to ``n`` samples."""
    data = load_dataset("digits" if kind == "dense" else "fashion-mnist")
    x, _ = encoded(data.test, T, min(n, len(data.test.y)))
    reps = -(-n // x.shape[1])
    return np.ascontiguousarray(np.tile(x, (1, reps, 1))[:, :n])


def _is_spike_pool(layer) -> bool:
    syn, n = layer.synapse, layer.neuron
    return (syn.type == "conv" and n.vth == 0 and syn.groups == syn.in_shape[0] and syn.weight.shape[1] == 1
            and bool((syn.weight == 1).all()) and tuple(syn.stride) == tuple(syn.weight.shape[2:]))


def peer_layers(net):
    """[(kind, synapse module or None, neuron parameters)] of the IR ``net`` as float32 modules:
    kind "pool" (MaxPool2d of spikes), "conv" or "dense" with the integer weights as floats."""
    out = []
    for layer in net.layers:
        syn, n = layer.synapse, layer.neuron
        if _is_spike_pool(layer):
            out.append(("pool", nn.MaxPool2d(int(syn.stride[0])), None))
            continue
        w = torch.from_numpy(syn.weight.astype(np.float32)) * 2.0 ** syn.weight_exp
        bias = torch.from_numpy((n.bias_mant.astype(np.float64) * 2.0 ** n.bias_exp / (1 << ACT_SHIFT)))
        if syn.type == "conv":
            mod = nn.Conv2d(syn.in_shape[0], w.shape[0], tuple(w.shape[2:]), tuple(syn.stride), tuple(syn.padding),
                            groups=syn.groups)
            per_channel = bias.reshape(w.shape[0], -1)[:, 0]
        else:
            mod = nn.Linear(w.shape[1], w.shape[0])
            per_channel = bias
        with torch.no_grad():
            mod.weight.copy_(w)
            mod.bias.copy_(per_channel.float())
        beta = (DECAY_UNITY - n.dv) / DECAY_UNITY
        out.append((syn.type, mod, {"beta": beta, "threshold": float(n.vth), "in_shape": getattr(syn, "in_shape", None)}))
    return out


def snntorch_forward(layers, x: torch.Tensor) -> torch.Tensor:
    """snnTorch: each synapse over all T steps at once, then ``Leaky`` looped over T (reset to zero)."""
    import snntorch as snn

    T, N = x.shape[:2]
    for kind, mod, p in layers:
        if kind == "pool":
            x = mod(x.flatten(0, 1)).unflatten(0, (T, N))
            continue
        flat = x.reshape(T * N, *p["in_shape"]) if kind == "conv" else x.reshape(T * N, -1)
        a = mod(flat).unflatten(0, (T, N))
        lif = p.get("snn") or p.setdefault("snn", snn.Leaky(beta=p["beta"], threshold=p["threshold"],
                                                              reset_mechanism="zero"))
        mem = lif.init_leaky()
        out = []
        for t in range(T):
            spk, mem = lif(a[t], mem)
            out.append(spk)
        x = torch.stack(out)
    return x


def spikingjelly_model(layers) -> nn.Module:
    """SpikingJelly multi-step: the same synapses wrapped step_mode 'm', ``LIFNode`` (no input decay)."""
    from spikingjelly.activation_based import layer as sl
    from spikingjelly.activation_based import neuron

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            mods = []
            for kind, mod, p in layers:
                if kind == "pool":
                    mods.append(sl.SeqToANNContainer(mod))
                    continue
                shape = p["in_shape"] if kind == "conv" else (-1,)
                mods += [Reshape(shape), sl.SeqToANNContainer(mod),
                         neuron.LIFNode(tau=1.0 / (1.0 - p["beta"]) if p["beta"] < 1 else 1e9, decay_input=False,
                                        v_threshold=p["threshold"], v_reset=0.0, step_mode="m")]
            self.seq = nn.Sequential(*mods)

        def forward(self, x):
            return self.seq(x)

    return Net()


class Reshape(nn.Module):
    """[T, N, ...] -> [T, N, *shape]."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(*x.shape[:2], *self.shape)


def batched(fn, x: np.ndarray, batch: int) -> None:
    """Run ``fn`` on float32 tensors of ``batch`` samples of ``x`` [T, N, n] in turn."""
    for lo in range(0, x.shape[1], batch):
        fn(torch.from_numpy(x[:, lo:lo + batch]).float())


def inference_round(kind: str, T: int, n: int, batch: int, repeats: int) -> dict:
    """samples/s of ours, snnTorch and SpikingJelly on ``kind`` at T, N = ``n``, best of ``repeats`` rounds."""
    from spikingjelly.activation_based import functional as sjf

    _, net = network(kind, T)
    x = inputs(kind, T, n)
    layers = peer_layers(net)
    sj = spikingjelly_model(layers)

    def sj_batch(xb):
        sjf.reset_net(sj)
        sj(xb)

    peers = {"snntorch": lambda xs: batched(lambda xb: snntorch_forward(layers, xb), xs, batch),
             "spikingjelly": lambda xs: batched(sj_batch, xs, batch)}
    head = x[:, :min(n, batch)]
    with torch.no_grad():
        threads = {k: best_threads(lambda: f(head)) for k, f in peers.items()}
    contenders = {"ours": lambda: simulate(net, x)}
    contenders.update({k: _with_threads(lambda f=f: f(x), threads[k]) for k, f in peers.items()})
    best = timed(contenders, repeats, torch.no_grad, warm_up=lambda: simulate(net, head))
    rate = {k: round(n / s, 1) for k, s in best.items()}
    return {"net": kind, "T": T, "N": n, "batch": batch, "samples_per_s": rate, "peer_threads": threads,
            "ours_over_best_peer": round(rate["ours"] / max(rate[k] for k in peers), 2)}


THREADS = (1, 2)  # torch intra-op threads a peer may use (the CPU has 2 cores); best_threads picks


def best_threads(f, rounds: int = 2) -> int:
    """The torch thread count in ``THREADS`` with which ``f`` runs fastest (best of ``rounds`` each)."""
    best = {t: min(_seconds(_with_threads(f, t)) for _ in range(rounds)) for t in THREADS}
    return min(best, key=best.get)


def _seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _with_threads(f, threads: int):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            f()
        finally:
            torch.set_num_threads(before)
    return run


def timed(contenders: dict, repeats: int, context=None, warm_up=None) -> dict:
    """Best wall seconds of each of ``contenders`` (name -> callable) over ``repeats`` interleaved rounds,
    inside ``context()`` when given, after ``warm_up()`` (default: one round of all)."""
    import contextlib

    best = {k: float("inf") for k in contenders}
    with (context or contextlib.nullcontext)():
        if warm_up is None:
            for f in contenders.values():
                f()
        else:
            warm_up()
        for _ in range(repeats):
            for k, f in contenders.items():
                best[k] = min(best[k], _seconds(f))
    return best


def snntorch_trainer(kind: str, T: int):
    """An snnTorch BPTT model of the ``kind`` net's shapes (conv: conv + BatchNorm), its Adam and forward."""
    import snntorch as snn

    _, net = network(kind, T)
    mods, plan = nn.ModuleList(), []
    for layer in net.layers:
        syn, n = layer.synapse, layer.neuron
        if _is_spike_pool(layer):
            plan.append(("pool", nn.MaxPool2d(int(syn.stride[0])), None))
            continue
        beta = (DECAY_UNITY - n.dv) / DECAY_UNITY
        if syn.type == "conv":
            c_out = syn.weight.shape[0]
            m = nn.Sequential(nn.Conv2d(syn.in_shape[0], c_out, syn.weight.shape[2], syn.stride, syn.padding),
                              nn.BatchNorm2d(c_out))
        else:
            m = nn.Linear(syn.weight.shape[1], syn.weight.shape[0])
        mods.append(m)
        plan.append((syn.type, m, (snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="zero"),
                                                getattr(syn, "in_shape", None))))
    opt = torch.optim.Adam(mods.parameters(), 1e-3)

    def forward(x):
        T_, N = x.shape[:2]
        for kind_, m, extra in plan:
            if kind_ == "pool":
                x = m(x.flatten(0, 1)).unflatten(0, (T_, N))
                continue
            lif, in_shape = extra
            flat = x.reshape(T_ * N, *in_shape) if kind_ == "conv" else x.reshape(T_ * N, -1)
            a = m(flat).unflatten(0, (T_, N))
            mem, out = lif.init_leaky(), []
            for t in range(T_):
                spk, mem = lif(a[t], mem)
                out.append(spk)
            x = torch.stack(out)
        return x.flatten(2)

    return opt, forward


def training_round(kind: str, T: int, steps: int, repeats: int, batch: int = 64) -> dict:
    """Training steps/s (forward, backward, Adam) of our QAT model and snnTorch BPTT, best of ``repeats``."""
    torch.manual_seed(0)
    ours = build_model(config(kind, T))
    ours.train()
    opt_ours = torch.optim.Adam(ours.parameters(), 1e-3)
    opt_snn, fwd_snn = snntorch_trainer(kind, T)
    x = torch.from_numpy(inputs(kind, T, batch * steps).astype(np.float32))
    y = torch.randint(0, 10, (batch * steps,))

    def ours_steps():
        for i in range(steps):
            sl = slice(i * batch, (i + 1) * batch)
            loss = F.cross_entropy(ours(x[:, sl])[-1].sum(0), y[sl])
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()

    def snn_steps():
        for i in range(steps):
            sl = slice(i * batch, (i + 1) * batch)
            loss = F.cross_entropy(fwd_snn(x[:, sl]).sum(0), y[sl])
            opt_snn.zero_grad()
            loss.backward()
            opt_snn.step()

    threads = {"ours": best_threads(ours_steps, 1), "snntorch": best_threads(snn_steps, 1)}
    best = timed({"ours": _with_threads(ours_steps, threads["ours"]),
                  "snntorch": _with_threads(snn_steps, threads["snntorch"])}, repeats)
    rate = {k: round(steps / s, 2) for k, s in best.items()}
    return {"net": kind, "T": T, "batch": batch, "steps_per_s": rate, "threads": threads,
            "ours_over_snntorch": round(rate["ours"] / rate["snntorch"], 2)}


def markdown(result: dict) -> str:
    """The two tables (inference, training) of ``result`` as markdown."""
    lines = [f"Measured {result['date']}, torch {result['torch']}, snntorch {result['snntorch']}, "
             f"spikingjelly {result['spikingjelly']}, {result['threads']} torch threads, best of "
             f"{result['repeats']} interleaved rounds.", "",
             "| net | T | N | peer batch | ours (exact) samples/s | snnTorch | SpikingJelly | peer threads | "
             "ours / best peer |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["inference"]:
        s = r["samples_per_s"]
        th = r["peer_threads"]
        lines.append(f"| {r['net']} | {r['T']} | {r['N']:,} | {r['batch']} | {s['ours']:,.0f} | {s['snntorch']:,.0f} "
                     f"| {s['spikingjelly']:,.0f} | {th['snntorch']}, {th['spikingjelly']} | "
                     f"**{r['ours_over_best_peer']}x** |")
    lines += ["", "| training, batch 64 | T | ours (QAT) steps/s | snnTorch BPTT steps/s | threads (ours, snnTorch) | "
              "ours / snnTorch |", "|---|---|---|---|---|---|"]
    for r in result["training"]:
        s = r["steps_per_s"]
        lines.append(f"| {r['net']} | {r['T']} | {s['ours']} | {s['snntorch']} | {r['threads']['ours']}, {r['threads']['snntorch']} | "
                     f"**{r['ours_over_snntorch']}x** |")
    return "\n".join(lines)


def write_doc(text: str, doc: Path = DOC) -> None:
    """Put ``text`` between the peers markers of ``doc`` (appending a section when they are missing)."""
    old = doc.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n## Against float SNN libraries (`bench/peers.py`)\n\n" + block + "\n"
    with atomic_write(doc) as tmp:
        tmp.write_text(new)


def main():
    """Parse the command line, run the bench (module docstring), print and write its results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="N = 360 only, T = 8 only, 2 rounds (a smoke run)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    import snntorch
    import spikingjelly  # noqa: F401 - present, or fail here with the install hint

    from qsnn_lava.io import installed_versions

    repeats = 2 if args.quick else args.repeats
    Ts, Ns = ((8,), (360,)) if args.quick else ((8, 4), (360, 4096))
    batches = {"dense": 4096, "conv": 128}
    result = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "snntorch": snntorch.__version__, "spikingjelly": installed_versions(["spikingjelly"])["spikingjelly"],
              "repeats": repeats, "inference": [], "training": []}
    for kind in ("dense", "conv"):
        for T in Ts:
            for n in Ns:
                result["inference"].append(inference_round(kind, T, n, min(n, batches[kind]), repeats))
                print(json.dumps(result["inference"][-1]), flush=True)
    for kind in ("dense", "conv"):
        for T in Ts:
            steps = args.train_steps if kind == "dense" else max(2, args.train_steps // 4)
            result["training"].append(training_round(kind, T, steps, repeats))
            print(json.dumps(result["training"][-1]), flush=True)
    print(json.dumps(result, indent=2))
    save_result(args.out, "peers.json", result)
    if not args.no_doc:
        write_doc(markdown(result))


if __name__ == "__main__":
    main()
