"""SYNTHETIC event data end to end: saccade events from digits -> 2-bit QSNN -> IR -> Lava, verified.

The digits split is turned into N-MNIST-style events by simulated saccades (qsnn_lava.events, seed 0;
synthetic, not a recording), binned into T = 8 binary frames (288 inputs), trained with 2-bit uniform
weights, and verified spike by spike: torch vs reference on all 360 test samples, reference vs Lava on 50.
Usage: python bench/events.py [--epochs 20] [--lava-samples 50]
"""
import argparse
import json
from pathlib import Path

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import report
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import atomic_write, write_json
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--theta", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    data = load_dataset("synthetic-saccades", timesteps=8)
    cfg = make_config(sizes=[data.n_in, 256, 10], bits=args.bits, theta=args.theta)
    model, hist = train(cfg, data, epochs=args.epochs, lr=args.lr)
    net = model_to_ir(model, {"dataset": "synthetic-saccades (SYNTHETIC events from digits)"})
    x, y = encoded(data.test, net.timesteps)
    full = report([evaluate(model, x), simulate(net, x)], y)
    lava = report([simulate(net, x[:, :args.lava_samples]), run_lava(net, x[:, :args.lava_samples], progress=True)],
                  y)
    result = {"dataset": "synthetic-saccades (SYNTHETIC: digits turned into saccade events, T = 8, 288 inputs)",
              "network": f"288-256-10, {args.bits}-bit uniform weights, theta = {args.theta}, LIF",
              "epochs": args.epochs, "train_seconds": round(hist["seconds"], 1),
              "accuracy": {"trained": full["accuracy"]["trained"], "deployed_reference": full["accuracy"]["reference"],
                           "deployed_lava_on_subset": lava["accuracy"]["lava"]},
              "spike_mismatches": {"trained_vs_reference": full["spike_mismatches"]["trained_vs_reference"],
                                   "reference_vs_lava": lava["spike_mismatches"]["reference_vs_lava"]},
              "samples": {"reference": full["samples"], "lava": lava["samples"]}}
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "events.json", result)
    with atomic_write(out / "events.md") as tmp:
        tmp.write_text("| dataset | network | trained | deployed (reference) | Lava subset | mismatches |\n"
                       "|---|---|---|---|---|---|\n"
                       f"| {result['dataset']} | {result['network']} | {100 * result['accuracy']['trained']:.2f} % | "
                       f"{100 * result['accuracy']['deployed_reference']:.2f} % | "
                       f"{100 * result['accuracy']['deployed_lava_on_subset']:.2f} % ({lava['samples']} samples) | "
                       f"{result['spike_mismatches']} |\n")


if __name__ == "__main__":
    main()
