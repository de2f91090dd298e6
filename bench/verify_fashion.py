"""Verification at scale on Fashion-MNIST: 1,000 test samples through Lava, all 10,000 through the reference.

Trains (or loads with --checkpoint) a 784-256-10 QSNN with 4-bit weights, converts it, then times
  * torch eval + reference + Lava on the first 1,000 test samples, spike by spike,
  * torch eval + reference on all 10,000 test samples.
Needs `apt-get install dataset-fashion-mnist`. Usage: python bench/verify_fashion.py [--epochs 3]
"""
import argparse
import json
from pathlib import Path

from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import report
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import save_checkpoint, write_json
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--theta", type=float, default=6.0)
    ap.add_argument("--checkpoint", help="use this checkpoint instead of training")
    ap.add_argument("--lava-samples", type=int, default=1000)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("fashion-mnist")
    if args.checkpoint:
        model, _ = load_model(args.checkpoint)
        train_s = None
    else:
        cfg = make_config(sizes=[784, 256, 10], theta=args.theta)
        model, hist = train(cfg, data, epochs=args.epochs)
        train_s = hist["seconds"]
        save_checkpoint(out / "fashion_mlp.pt", cfg, model.state_dict(), {"dataset": "fashion-mnist"})
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps)
    n_lava = args.lava_samples
    lava_part = [evaluate(model, x[:, :n_lava]), simulate(net, x[:, :n_lava]), run_lava(net, x[:, :n_lava], progress=True)]
    full = [evaluate(model, x), simulate(net, x, progress=True)]
    r_lava, r_full = report(lava_part, y), report(full, y)
    result = {
        "network": "784-256-10, 4-bit uniform, LIF, T = 8",
        "train_seconds": train_s,
        "lava_verification": {"samples": n_lava, "accuracy": r_lava["accuracy"],
                              "spike_mismatches": r_lava["spike_mismatches"], "seconds": r_lava["seconds"]},
        "reference_verification": {"samples": x.shape[1], "accuracy": r_full["accuracy"],
                                   "spike_mismatches": r_full["spike_mismatches"], "seconds": r_full["seconds"]},
    }
    print(json.dumps(result, indent=2))
    write_json(out / "verify_fashion.json", result)


if __name__ == "__main__":
    main()
