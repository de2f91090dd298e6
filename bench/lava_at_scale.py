"""The conv Fashion-MNIST QSNN through real Lava at scale: samples/s and spike mismatches against the reference.

The network is the VGG-style QSNN of bench/fashion_mnist.py (channels 16 32, 4-bit, BN folded, T = 4): its
checkpoint bench/results/fashion_conv.pt when present (``--checkpoint``), else trained here for one epoch on
the first ``--train-images`` training images (the bench measures verification speed, not accuracy). The first
``--samples`` test images (default: all 10,000) run through the reference simulator and through Lava
(CPU, fixed_pt) with ``--workers`` Lava workers on sample shards at once; with ``--compare-workers`` the same
samples also run with one worker, so both are timed in one run. Prints JSON (wall seconds, samples/s, spike
mismatches, accuracy) and writes bench/results/lava_at_scale.json.
Needs `apt-get install dataset-fashion-mnist`. Usage: python bench/lava_at_scale.py [--samples 1000]
"""
import argparse
import json
import time
from pathlib import Path

import common  # the sibling bench/common.py
from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.data import Dataset, Split, encoded, load_dataset
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import train


def network(args, data):
    """(IR of the conv QSNN, where it came from)."""
    path = Path(args.checkpoint)
    if path.exists():
        model, _ = load_model(path)
        return model_to_ir(model), str(path)
    cfg = make_config(arch="vgg", sizes=[data.n_in, data.n_classes], input_shape=data.shape, channels=[16, 32],
                      timesteps=4)
    n = args.train_images
    small = Dataset(data.name, Split(data.train.x[:n], data.train.y[:n], data.train.levels),
                    Split(data.test.x[:1000], data.test.y[:1000], data.test.levels), data.n_in, data.n_classes,
                    data.shape)
    model, hist = train(cfg, small, epochs=1, lr=1e-3, progress=False)
    return model_to_ir(model), f"trained here: 1 epoch, {args.train_images} images, test acc {hist['test_acc'][-1]:.3f}"


def timed_lava(net, x, workers: int):
    t0 = time.perf_counter()
    rec = run_lava(net, x, progress=True, workers=workers)
    return rec, time.perf_counter() - t0


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare-workers", action="store_true", help="also time the same samples with 1 worker")
    ap.add_argument("--checkpoint", default="bench/results/fashion_conv.pt")
    ap.add_argument("--train-images", type=int, default=6000)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    data = load_dataset("fashion-mnist")
    net, origin = network(args, data)
    x, y = encoded(data.test, net.timesteps, args.samples)
    ref = simulate(net, x)
    result = {"network": "vgg 16-32, 4-bit, BN folded, LIF, T = %d" % net.timesteps, "weights": origin,
              "samples": int(x.shape[1]), "reference_seconds": round(ref.info["seconds"], 3),
              "reference_accuracy": ref.accuracy(y), "runs": []}
    for workers in ([args.workers, 1] if args.compare_workers and args.workers != 1 else [args.workers]):
        lava, seconds = timed_lava(net, x, workers)
        result["runs"].append({"workers": workers, "seconds": round(seconds, 1),
                               "samples_per_s": round(x.shape[1] / seconds, 1),
                               "spike_mismatches": compare(ref, lava)["mismatches"],
                               "lava_accuracy": lava.accuracy(y)})
        print(json.dumps(result["runs"][-1]), flush=True)
    print(json.dumps(result, indent=2))
    common.save_result(args.out, "lava_at_scale.json", result)


if __name__ == "__main__":
    main()
