"""Samples per second of a naive per-sample Lava loop vs the batched runner, same network and samples.

Naive: for each sample build a graph, run T + L steps, read the spikes, stop (what most scripts do).
Batched: all samples in one graph with LIFReset windows and streamed read-back (deploy.backends.lava).
Both results are compared spike for spike. Usage: python bench/lava_runner.py [--samples 40]
"""
import argparse
import json
import time

import numpy as np

from common import digits_network, save_result  # the sibling bench/common.py
from qsnn_lava.deployment.backends.lava import run as run_lava


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    net, x = digits_network(args.epochs, args.samples)
    n = x.shape[1]

    t0 = time.perf_counter()
    naive = [run_lava(net, x[:, k:k + 1]) for k in range(n)]
    naive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = run_lava(net, x)
    batched_s = time.perf_counter() - t0
    mismatches = sum(int((np.concatenate([r.spikes[i] for r in naive], axis=1) != batched.spikes[i]).sum())
                     for i in range(len(net.layers)))
    result = {"network": "-".join([str(net.n_in)] + [str(layer.neuron.n) for layer in net.layers]),
              "timesteps": net.timesteps, "samples": n, "spike_mismatches_naive_vs_batched": mismatches,
              "naive_samples_per_s": round(n / naive_s, 2), "batched_samples_per_s": round(n / batched_s, 2),
              "ratio_batched_over_naive": round(naive_s / batched_s, 1)}
    print(json.dumps(result, indent=2))
    save_result(args.out, "lava_runner.json", result)


if __name__ == "__main__":
    main()
