"""netx export: loading the file with lava-dl's netx and running it gives our spikes (real Lava)."""
import numpy as np
import pytest

from converters.netx import export_netx
from deploy.backends.netx import run_netx
from netgen import random_network, random_spikes
from qsnn_lava.errors import QsnnError
from qsnn_lava.reference import simulate

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("seed", [0, 1])
def test_netx_round_trip_equals_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng, sizes=(12, 9, 6), timesteps=5)
    for layer in net.layers:  # what netx can carry: exponent >= 0, bias at bias_exp 6
        layer.synapse.weight_exp = abs(layer.synapse.weight_exp)
        layer.neuron.bias_exp = 6
    x = random_spikes(rng, net, 5)
    export_netx(net, tmp_path / "n.net")
    out = run_netx(tmp_path / "n.net", x, net.timesteps, len(net.layers))
    ref = simulate(net, x).spikes[-1]
    assert ref.sum() > 0 and np.array_equal(out, ref)


def test_netx_refuses_what_it_cannot_express(tmp_path, rng):
    net = random_network(rng, bias=False)
    net.layers[1].synapse.weight_exp = -1
    with pytest.raises(QsnnError, match="layer 1 .*weight_exp = -1"):
        export_netx(net, tmp_path / "n.net")
    net.layers[1].synapse.weight_exp = 0
    net.layers[0].synapse.weight_exp = 0
    net.layers[0].neuron.bias_exp, net.layers[0].neuron.bias_mant[:] = 0, 5
    with pytest.raises(QsnnError, match="layer 0 .*multiple of 64"):
        export_netx(net, tmp_path / "n.net")
    assert not (tmp_path / "n.net").exists()
