"""A float snnTorch SNN on digits -> NIR -> Loihi integers -> fine-tuned: accuracy at every step.

Usage: python bench/nir_digits.py [--epochs 15] [--hidden 128] [--weight-bits 8 4] [--finetune-epochs 5]
                                  [--lava-samples 60] [--out bench/results]

1. snnTorch 1.0 trains a 64-H-10 network of Leaky neurons (beta 0.9 and 0.8, threshold 1, reset to zero, the
   reset NIR's LIF has) with BPTT on the same rate-coded digits spikes the rest of qsnn-lava uses (T = 8),
   cross-entropy on the output spike counts: "float (snnTorch)".
2. ``snntorch.export_nir.export_to_nir`` writes the NIR graph (tau = dt / (1 - beta) at dt = 1e-4 s).
3. ``ql.import_nir`` at dt = 1e-4 s with calibration on the whole training set: "float (our NIR simulation)"
   is ``simulate_float`` of the graph at that dt; "integer" the IR on the reference simulator; Lava runs the
   first ``--lava-samples`` test samples and must agree with the reference spike for spike.
4. ``ql.finetune`` trains the IR in its exact integer dynamics; the fine-tuned IR is measured the same way.
All accuracies are on the 360 digits test samples. Prints JSON and a markdown table; writes
``nir_digits.json`` under ``--out``.
"""
import argparse
import json
import time
import warnings

import numpy as np
import torch

import qsnn_lava as ql
from common import save_result  # the sibling bench/common.py
from qsnn_lava.converters.nir import simulate_float
from qsnn_lava.training import set_seed

DT = 1e-4  # snnTorch's exporter writes its time constants at this step
T = 8


def snntorch_model(hidden: int):
    """64-hidden-10, Leaky neurons with per-neuron beta and threshold tensors (the exporter needs them)."""
    import snntorch as snn

    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        snn.Leaky(beta=torch.full((hidden,), 0.9), threshold=torch.ones(hidden), reset_mechanism="zero",
                  init_hidden=True),
        torch.nn.Linear(hidden, 10),
        snn.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10), reset_mechanism="zero", init_hidden=True,
                  output=True))


def run_snntorch(model, x: torch.Tensor) -> torch.Tensor:
    """Output spike counts [N, 10] of ``model`` on spikes ``x`` [T, N, 64] (float), from a reset state."""
    import snntorch.utils

    snntorch.utils.reset(model)
    return sum(model(x[t])[0] for t in range(x.shape[0]))


def train_snntorch(hidden: int, epochs: int, x: np.ndarray, y: np.ndarray, seed: int = 0):
    """BPTT with Adam (lr 2e-3, batches of 64), cross-entropy on output spike counts. Returns (model, seconds)."""
    set_seed(seed)
    model = snntorch_model(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(yt))
        for lo in range(0, len(perm), 64):
            idx = perm[lo:lo + 64]
            loss = torch.nn.functional.cross_entropy(run_snntorch(model, xt[:, idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, time.perf_counter() - t0


def accuracy(counts: np.ndarray, y: np.ndarray) -> float:
    """Most output spikes (ties to the lowest index, as everywhere in qsnn-lava) against the labels."""
    return float((np.argmax(counts, axis=-1) == y).mean())


def lava_check(net, x: np.ndarray) -> int:
    """Spike mismatches between the reference and Lava on spikes ``x``, over every layer."""
    ref, lava = ql.simulate(net, x), ql.simulate(net, x, backend="lava")
    return sum(int((a != b).sum()) for a, b in zip(ref.spikes, lava.spikes))


def main():
    """Parse the command line, run the bench (module docstring), print and save its results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15, help="snnTorch training epochs")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--weight-bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--finetune-lr", type=float, default=0.05, help="weight mantissas per step")
    ap.add_argument("--lava-samples", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # torch.jit / nirtorch deprecations inside the exporters

    from snntorch.export_nir import export_to_nir

    data = ql.load_dataset("digits", timesteps=T)
    x_train, y_train = ql.encode(data.train, T)
    x_test, y_test = ql.encode(data.test, T)
    model, train_s = train_snntorch(args.hidden, args.epochs, x_train, y_train, args.seed)
    with torch.no_grad():
        acc_snntorch = accuracy(run_snntorch(model, torch.from_numpy(x_test.astype(np.float32))).numpy(), y_test)
    graph = export_to_nir(model, torch.zeros(64))
    out_node = next(a for a, b in graph.edges if b == "output")
    acc_float = accuracy(simulate_float(graph, x_test, DT)[out_node].sum(0), y_test)
    n_lava = min(args.lava_samples, x_test.shape[1])
    result = {"network": f"64-{args.hidden}-10 snnTorch Leaky (beta 0.9, 0.8; reset to zero)", "timesteps": T,
              "dt": DT, "snntorch_epochs": args.epochs, "snntorch_train_seconds": round(train_s, 1),
              "test_samples": int(x_test.shape[1]), "calibration": f"the {x_train.shape[1]} training samples",
              "accuracy_snntorch": acc_snntorch, "accuracy_float_nir": acc_float, "lava_samples": n_lava, "runs": []}
    for bits in args.weight_bits:
        net, report = ql.import_nir(graph, dt=DT, timesteps=T, weight_bits=bits, calibration=x_train, labels=y_train)
        acc_int = ql.simulate(net, x_test).accuracy(y_test)
        tuned = ql.finetune(net, dataset="digits", epochs=args.finetune_epochs, lr=args.finetune_lr, seed=args.seed)
        ft = tuned.meta["finetune"]
        result["runs"].append({
            "weight_bits": bits, "accuracy_integer": acc_int, "accuracy_finetuned": ft["accuracy_after"],
            "finetune_accuracy_per_epoch": ft["test_accuracy_per_epoch"], "finetune_seconds": ft["seconds"],
            "event_agreement_float_vs_integer": {k: round(v["event_agreement"], 4)
                                                 for k, v in report["agreement"]["layers"].items()},
            "weight_exp": {k: v["weight_exp"] for k, v in report["layers"].items()},
            "vth": {k: v["vth"] for k, v in report["layers"].items()},
            "lava_mismatches_imported": lava_check(net, x_test[:, :n_lava]),
            "lava_mismatches_finetuned": lava_check(tuned, x_test[:, :n_lava])})
    print(json.dumps(result, indent=2))
    print(table(result))
    save_result(args.out, "nir_digits.json", result)


def table(result: dict) -> str:
    """The markdown table of ``result``: one row per stage, one accuracy column per weight width."""
    runs = result["runs"]
    head = "| stage | " + " | ".join(f"{r['weight_bits']}-bit" for r in runs) + " |"
    rows = [head, "|---|" + "---|" * len(runs)]

    def row(name, values):
        rows.append(f"| {name} | " + " | ".join(values) + " |")

    pct = "{:.2f} %".format
    row("float, snnTorch's own forward", [pct(100 * result["accuracy_snntorch"])] * len(runs))
    row(f"float, our NIR simulation at dt = {result['dt']:g} s", [pct(100 * result["accuracy_float_nir"])] * len(runs))
    row("integer (reference), after import-nir", [pct(100 * r["accuracy_integer"]) for r in runs])
    row(f"integer, after finetune ({len(runs[0]['finetune_accuracy_per_epoch'])} epochs)",
        [pct(100 * r["accuracy_finetuned"]) for r in runs])
    row(f"Lava vs reference, {result['lava_samples']} samples (imported / fine-tuned)",
        [f"{r['lava_mismatches_imported']} / {r['lava_mismatches_finetuned']} mismatches" for r in runs])
    return "\n".join(rows)


if __name__ == "__main__":
    main()
