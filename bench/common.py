"""Pieces the benchmarks share: a trained digits network, a float ANN trainer, and writing results.

The package is installed (``make setup``: editable), so the scripts import ``qsnn_lava`` directly; they
import this sibling module as ``common`` (Python puts a script's own folder first on sys.path).
"""
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qsnn_lava.converters.checkpoint import model_to_ir
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import write_json
from qsnn_lava.models import make_config
from qsnn_lava.training import set_seed, train


def digits_network(epochs: int, samples: int):
    """The demo's 64-256-10 QSNN trained for ``epochs`` on digits, as an IR, and the first ``samples`` test
    inputs encoded as spikes [T, samples, 64]."""
    data = load_dataset("digits")
    model, _ = train(make_config(), data, epochs=epochs, progress=False)
    net = model_to_ir(model)
    x, _ = encoded(data.test, net.timesteps, min(samples, len(data.test.y)))
    return net, x


def save_result(out: str, name: str, result: dict) -> None:
    """Write ``result`` as JSON to ``out``/``name`` (the folder is created; the file written atomically)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / name, result)


def train_ann(ann, data, epochs: int, batch_size: int = 128, seed: int = 0):
    """Train the float ANN ``ann`` on ``data``'s intensities (scaled to [0, 1]) with Adam (lr 1e-3) for
    ``epochs`` epochs of ``batch_size`` samples, seeded by ``seed``. Returns (test accuracy as a fraction,
    training seconds)."""
    set_seed(seed)
    x = torch.from_numpy(data.train.x.astype(np.float32) / data.train.levels)
    y = torch.from_numpy(data.train.y)
    opt = torch.optim.Adam(ann.parameters(), 1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        ann.train()
        perm = torch.randperm(len(y))
        for lo in range(0, len(y), batch_size):
            idx = perm[lo:lo + batch_size]
            loss = nn.functional.cross_entropy(ann(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    ann.eval()
    xt = torch.from_numpy(data.test.x.astype(np.float32) / data.test.levels)
    with torch.no_grad():
        acc = float((ann(xt).argmax(-1).numpy() == data.test.y).mean())
    return acc, time.perf_counter() - t0
