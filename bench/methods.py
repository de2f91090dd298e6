"""The seed methods side by side on Fashion-MNIST: quantizers x bits with LIF, and mfp vs qmem neurons.

One fixed small architecture (784-128-10, T = 4, rate-coded input), trained with the same budget for
  * lif with uniform and rescaw at 2 and 4 bits, sigmoid at 1 (binary), 2 and 4 bits,
  * 4-bit uniform weights with the mfp neuron and with qmem at stored-membrane widths 2 and 4 bits,
and the float ANN of the same shape (ReLU, fp32) as the baseline. For each: trained accuracy (torch
integer eval on all 10,000 test images), deployed accuracy (reference simulator, spike-compared with
torch), a real-Lava check on the first --lava-samples (spike mismatches vs the reference), Eq. 8
utilisation, and model size per QP-SNN Eq. 16 (parameters x bits). Writes bench/results/methods.{json,md}
and methods.png (accuracy vs weight bits). Needs `apt-get install dataset-fashion-mnist`.
Usage: python bench/methods.py [--epochs 5] [--lr 1e-3] [--hidden 128]  (about 5 minutes on 2 cores)
"""
import argparse
import time
from pathlib import Path

import common  # the sibling bench/common.py
from torch import nn

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import save_figure
from qsnn_lava.metrics import model_size
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train

RUNS = [  # (quant, bits, neuron, mem_bits)
    ("uniform", 2, "lif", None), ("uniform", 4, "lif", None),
    ("rescaw", 2, "lif", None), ("rescaw", 4, "lif", None),
    ("sigmoid", 1, "lif", None), ("sigmoid", 2, "lif", None), ("sigmoid", 4, "lif", None),
    ("uniform", 4, "mfp", None), ("uniform", 4, "qmem", 2), ("uniform", 4, "qmem", 4),
]


def float_mlp(sizes, data, epochs) -> float:
    """Test accuracy (fraction) of the float ReLU MLP of layer sizes ``sizes`` trained ``epochs`` epochs on
    ``data`` (the baseline of the same shape)."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return common.train_ann(nn.Sequential(*layers[:-1]), data, epochs, batch_size=64)[0]


def plot(rows, baseline, path):
    """Deployed accuracy (%) against weight bits per quantizer, the non-LIF neurons as squares and the float
    ANN's ``baseline`` accuracy (fraction) as a line; ``rows``: the runs; saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for q in ("uniform", "rescaw", "sigmoid"):
        pts = sorted((r["bits"], 100 * r["deployed_accuracy"]) for r in rows if r["quant"] == q and r["neuron"] == "lif")
        ax.plot(*zip(*pts), marker="o", label=f"{q} (lif)")
    for r in rows:
        if r["neuron"] != "lif":
            label = r["neuron"] + (f" mem {r['mem_bits']}b" if r["mem_bits"] else "")
            ax.scatter([r["bits"] + 0.1 * (r["mem_bits"] or 0)], [100 * r["deployed_accuracy"]], marker="s", label=label)
    ax.axhline(100 * baseline, color="k", ls="--", label="float ANN")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("deployed accuracy (%)")
    ax.set_title("Fashion-MNIST, 784-128-10, T = 4")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main():
    """Parse the command line, run every method of ``RUNS`` and write methods.{json,md,png} under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--theta", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--train-samples", type=int, default=None, help="use the first N training images")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    data = load_dataset("fashion-mnist")
    if args.train_samples:
        data.train.x, data.train.y = data.train.x[:args.train_samples], data.train.y[:args.train_samples]
    sizes = [data.n_in, args.hidden, data.n_classes]
    baseline = float_mlp(sizes, data, args.epochs)
    print(f"float ANN {sizes}: {100 * baseline:.2f} %")
    x, y = encoded(data.test, args.timesteps)
    rows = []
    for quant, bits, neuron, mem_bits in RUNS:
        cfg = make_config(sizes=sizes, quant=quant, bits=bits, neuron=neuron, mem_bits=mem_bits,
                          theta=args.theta, timesteps=args.timesteps)
        t0 = time.perf_counter()
        model, hist = train(cfg, data, epochs=args.epochs, lr=args.lr, progress=False)
        train_s = time.perf_counter() - t0
        net = model_to_ir(model)
        torch_rec, ref = evaluate(model, x), simulate(net, x)
        n = args.lava_samples
        lava = run_lava(net, x[:, :n])
        row = {"quant": quant, "bits": bits, "neuron": neuron, "mem_bits": mem_bits,
               "trained_accuracy": torch_rec.accuracy(y), "deployed_accuracy": ref.accuracy(y),
               "torch_vs_reference_mismatches": compare(torch_rec, ref)["mismatches"],
               "lava_samples": n, "reference_vs_lava_mismatches": compare(ref, lava)["mismatches"],
               "utilisation": model.utilisation(), "model_kbytes": model_size(net)["total"]["size_kbytes"],
               "train_seconds": train_s,
               "loihi_deployable": neuron != "qmem"}
        rows.append(row)
        print(f"{quant:8s} {bits}b {neuron:4s} mem {mem_bits or '-'}: deployed {100 * row['deployed_accuracy']:.2f} % "
              f"(trained {100 * row['trained_accuracy']:.2f} %), Lava mismatches {row['reference_vs_lava_mismatches']}, "
              f"{row['model_kbytes']:.1f} KiB, {train_s:.0f} s")
    result = {"network": f"{sizes}, T = {args.timesteps}, theta {args.theta}, {args.epochs} epochs",
              "float_ann_accuracy": baseline, "float_kbytes": sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * 4 / 1024,
              "runs": rows}
    common.save_result(args.out, "methods.json", result)
    md = [f"Fashion-MNIST, {result['network']}; float ANN of the same shape: {100 * baseline:.2f} % "
          f"({result['float_kbytes']:.0f} KiB at 32 bits)", "",
          "| quantizer | bits | neuron | membrane bits | trained % | deployed % | Lava mismatches (samples) | "
          "size KiB (Eq. 16) | on Loihi |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['quant']} | {r['bits']} | {r['neuron']} | {r['mem_bits'] or '24 (native)'} | "
                  f"{100 * r['trained_accuracy']:.2f} | {100 * r['deployed_accuracy']:.2f} | "
                  f"{r['reference_vs_lava_mismatches']} ({r['lava_samples']}) | {r['model_kbytes']:.1f} | "
                  f"{'yes' if r['loihi_deployable'] else 'CPU only'} |")
    (Path(args.out) / "methods.md").write_text("\n".join(md) + "\n")
    plot(rows, baseline, Path(args.out) / "methods.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
