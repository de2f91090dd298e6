"""Property: for any small legal network and input, the reference equals real Lava spike for spike."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from qsnn_lava.ir import LIF, Dense, Layer, Network
from qsnn_lava.reference import simulate

pytestmark = pytest.mark.lava


@st.composite
def networks(draw):
    n_layers = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 12)) for _ in range(n_layers + 1)]
    T = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hot = draw(st.booleans())  # push u and v towards the 24-bit limits
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        bits = draw(st.integers(1, 8))
        sign = draw(st.sampled_from(["mixed", "exc", "inh"]))
        lo, hi = {"mixed": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1),
                  "exc": (0, (1 << bits) - 1), "inh": (-((1 << bits) - 1), 0)}[sign]
        w = rng.integers(lo, hi + 1, (b, a))
        exp = draw(st.integers(4, 7)) if hot else draw(st.integers(-3, 3))
        vth = draw(st.integers(0, (1 << 17) - 1)) if hot else draw(st.integers(0, 200))
        layers.append(Layer(f"l{i}", Dense(w, exp), LIF(
            b, vth=vth, du=draw(st.integers(0, 4095)), dv=draw(st.integers(0, 4095)),
            bias_mant=rng.integers(-4096, 4096, b) if draw(st.booleans()) else None,
            bias_exp=draw(st.integers(0, 7)) if hot else draw(st.integers(0, 2)))))
    net = Network((widths[0],), layers, T)
    net.validate()
    x = (rng.random((T, draw(st.integers(1, 4)), widths[0])) < draw(st.floats(0.1, 0.9))).astype(np.uint8)
    return net, x


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=networks())
def test_reference_equals_lava(case):
    net, x = case
    c = compare(simulate(net, x), run_lava(net, x))
    assert c["mismatches"] == 0, c["first_divergence"]
