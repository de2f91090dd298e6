"""Small random IR networks and inputs for tests."""
import numpy as np

from qsnn_lava.ir import LIF, Dense, Layer, Network


def random_network(rng, sizes=(12, 9, 6), timesteps=5, wmax=20, bias=True, exc_only=False):
    """A small random IR: random weights, exponents, decays, thresholds and (optionally) biases."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lo = 0 if exc_only else -wmax
        w = rng.integers(lo, wmax + 1, (b, a))
        layers.append(Layer(
            f"l{i}", Dense(w, weight_exp=int(rng.integers(-2, 3))),
            LIF(b, vth=int(rng.integers(1, 60)), du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                bias_mant=rng.integers(-20, 40, b) if bias else None, bias_exp=int(rng.integers(0, 3)))))
    return Network((sizes[0],), layers, timesteps).validate()


def random_spikes(rng, net, n_samples, rate=0.4):
    return (rng.random((net.timesteps, n_samples, net.n_in)) < rate).astype(np.uint8)
