"""What direct input, learned thresholds and the training recipe are each worth, at small scale.

Trains the conv QSNN of bench/fashion_mnist.py (VGG-style, BatchNorm folded, 4-bit uniform weights) on the
first --train-samples Fashion-MNIST training images for --epochs epochs, once per variant, and reports the
deployed accuracy (the integer eval model, spike-checked against the reference simulator: 0 mismatches) on
the first --test-samples test images, with each run's wall and CPU time:
  base      rate-coded 0/1 input, fixed theta, the original recipe (Adam, cosine per epoch)
  direct    + direct (graded) 8-bit input
  learned   + learned per-layer thresholds
  recipe    + the recipe (warm-up + cosine per batch, AdamW decay, random flips)
  recipe-rate  the recipe and learned thresholds with the rate input (what direct input is worth on top)
  recipe+crop+ls  the recipe plus label smoothing 0.1 and random crops (pad 2)
  readout   the recipe with the output layer a non-spiking readout (class = largest voltage sum, no ties)
Writes bench/results/ablation.{json,md}. Usage: python bench/ablation.py [--epochs 2] [--train-samples 10000]
"""
import argparse
import time
from pathlib import Path

import common  # the sibling bench/common.py
from fashion_mnist import RECIPE  # the sibling bench/fashion_mnist.py

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.data import Dataset, encoded, load_dataset
from qsnn_lava.deployment.verify import compare
from qsnn_lava.models import make_config
from qsnn_lava.pruning import subset
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train

MORE = {**RECIPE, "label_smoothing": 0.1, "crop_pad": 2}
VARIANTS = {
    "base": ({"input": "rate", "learn_threshold": False}, {}),
    "direct": ({"input": "direct", "learn_threshold": False}, {}),
    "learned": ({"input": "direct", "learn_threshold": True}, {}),
    "recipe": ({"input": "direct", "learn_threshold": True}, RECIPE),
    "recipe-rate": ({"input": "rate", "learn_threshold": True}, RECIPE),
    "recipe+crop+ls": ({"input": "direct", "learn_threshold": True}, MORE),
    "readout": ({"input": "direct", "learn_threshold": True, "readout": True}, RECIPE),
}


def run_variant(name: str, data: Dataset, args) -> dict:
    """Train one variant and measure it (module docstring); the deployed accuracy is checked against the
    reference simulator spike for spike."""
    cfg_over, recipe = VARIANTS[name]
    cfg = make_config(arch="vgg", sizes=[data.n_in, data.n_classes], input_shape=data.shape, channels=args.channels,
                      bits=args.bits, timesteps=args.timesteps, input_bits=args.input_bits, **cfg_over)
    wall, cpu = time.perf_counter(), time.process_time()
    model, hist = train(cfg, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=False,
                        recipe=recipe, seed=args.seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps, input_bits=net.input_bits)
    tr, ref = evaluate(model, x), simulate(net, x)
    row = {"variant": name, "input": cfg["input"], "learn_threshold": cfg["learn_threshold"],
           "recipe": recipe or "original", "accuracy": tr.accuracy(y), "per_epoch": hist["test_acc"],
           "torch_vs_reference_mismatches": compare(tr, ref)["mismatches"],
           "vth": [layer.neuron.vth for layer in net.layers if not layer.name.startswith("pool")],
           "train_wall_s": wall, "train_cpu_s": cpu}
    print(f"{name:12s} {100 * row['accuracy']:.2f} %  per epoch {[round(100 * a, 2) for a in hist['test_acc']]}  "
          f"mismatches {row['torch_vs_reference_mismatches']}  vth {row['vth']}  wall {wall:.0f} s cpu {cpu:.0f} s",
          flush=True)
    return row


def main():
    """Parse the command line, run the chosen variants and write bench/results/ablation.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--input-bits", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="ablation", help="results file stem")
    args = ap.parse_args()
    full = load_dataset("fashion-mnist")
    data = Dataset(full.name, subset(full.train, slice(0, args.train_samples)),
                   subset(full.test, slice(0, args.test_samples)), full.n_in, full.n_classes, full.shape)
    rows = [run_variant(v, data, args) for v in args.variants]
    result = {"setup": {k: v for k, v in vars(args).items() if k not in ("out", "name")}, "rows": rows}
    common.save_result(args.out, f"{args.name}.json", result)
    md = ["| variant | input | learned vth | recipe | deployed % | mismatches | train wall s | train CPU s |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['input']} | {r['learn_threshold']} | {'new' if r['recipe'] != 'original' else 'original'} "
           f"| {100 * r['accuracy']:.2f} | {r['torch_vs_reference_mismatches']} | {r['train_wall_s']:.0f} "
           f"| {r['train_cpu_s']:.0f} |" for r in rows]
    (Path(args.out) / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
