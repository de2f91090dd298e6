"""Samples per second of the batched integer reference vs Lava (CPU, fixed_pt), same network and samples.

Usage: python bench/reference_vs_lava.py [--samples 200] [--epochs 10] [--out bench/results]
Prints one JSON object; the Lava figure is wall time for build + run + read-back + stop, and the run
alone is reported too. Spikes of both sides are compared, so the speed is for an exact answer.
"""
import argparse
import json
import time

from common import digits_network, save_result  # the sibling bench/common.py
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from qsnn_lava.reference import simulate


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    net, x = digits_network(args.epochs, args.samples)
    n = x.shape[1]

    simulate(net, x)  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = simulate(net, x)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    lava = run_lava(net, x)
    lava_s = time.perf_counter() - t0
    result = {
        "network": "-".join([str(net.n_in)] + [str(layer.neuron.n) for layer in net.layers]),
        "timesteps": net.timesteps,
        "samples": n,
        "spike_mismatches": compare(ref, lava)["mismatches"],
        "reference_samples_per_s": round(n / best, 1),
        "lava_samples_per_s": round(n / lava_s, 2),
        "lava_run_only_samples_per_s": round(n / lava.info["run_s"], 2),
        "lava_seconds": {k: round(v, 3) for k, v in lava.info.items() if k.endswith("_s") or k == "seconds"},
        "ratio_reference_over_lava": round(lava_s / best, 1),
    }
    print(json.dumps(result, indent=2))
    save_result(args.out, "reference_vs_lava.json", result)


if __name__ == "__main__":
    main()
