"""Training steps per second of the MFP neuron trained in parallel over time vs step by step (BPTT).

Same network (64-256-10, 4-bit uniform weights, MFP neurons), same batches; "parallel" computes all T
steps of each layer's leaky sum with one matmul (qsnn_lava.neurons.MFP), "sequential" runs the exact
integer dynamics one step at a time with backpropagation through time. Prints the ratio for T = 4, 8, 16,
32. Usage: python bench/parallel_training.py [--steps 30]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qsnn_lava.data import load_dataset, rate_encode
from qsnn_lava.io import write_json
from qsnn_lava.models import build_model, make_config
from qsnn_lava.neurons import MFP


def steps_per_second(T: int, parallel: bool, steps: int, batch: int = 64) -> float:
    """Training steps per second of the digits MFP network at ``T`` time steps, with the parallel (``parallel``)
    or the step-by-step MFP forward: ``steps`` timed Adam steps on one batch of ``batch`` samples, after 3
    warm-up steps."""
    torch.manual_seed(0)
    model = build_model(make_config(neuron="mfp", timesteps=T))
    for m in model.modules():
        if isinstance(m, MFP):
            m.parallel = parallel
    data = load_dataset("digits")
    x = torch.from_numpy(rate_encode(data.train.x[:batch], 16, T).astype(np.float64))
    y = torch.from_numpy(data.train.y[:batch])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for i in range(steps + 3):  # 3 warm-up steps
        if i == 3:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x)[-1].sum(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main():
    """Parse the command line, time both MFP forwards at several T and write parallel_training.json under
    ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    rows = []
    for T in (4, 8, 16, 32):
        par, seq = steps_per_second(T, True, args.steps), steps_per_second(T, False, args.steps)
        rows.append({"T": T, "parallel_steps_per_s": round(par, 1), "sequential_steps_per_s": round(seq, 1),
                     "ratio": round(par / seq, 2)})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "parallel_training.json", {"network": "64-256-10 MFP, 4-bit, batch 64", "rows": rows})


if __name__ == "__main__":
    main()
