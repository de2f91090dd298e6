"""netx export: loading the file with lava-dl's netx and running it gives our spikes (real Lava)."""
import numpy as np
import pytest

from qsnn_lava.converters.netx import export_netx
from qsnn_lava.deployment.backends.netx import run_netx
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


def slayer_netx(path, seed=0):
    """A two-layer CUBA network trained by nobody, exported by lava-dl's own slayer blocks."""
    import h5py
    import torch
    import lava.lib.dl.slayer as slayer

    torch.manual_seed(seed)
    p = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}
    blocks = [slayer.block.cuba.Dense(p, 20, 16, weight_norm=False), slayer.block.cuba.Dense(p, 16, 5, weight_norm=False)]
    x = (torch.rand(1, 20, 4) < 0.5).float()
    for b in blocks:
        x = b(x)  # slayer infers shapes on the first forward pass
    with h5py.File(path, "w") as h:
        g = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(g.create_group(str(i)))


@pytest.mark.lava_env  # lava-dl's slayer runs in the test process
def test_import_slayer_export_matches_netx_on_lava(tmp_path):
    from qsnn_lava.converters.netx import import_netx

    slayer_netx(tmp_path / "s.net")
    net = import_netx(tmp_path / "s.net", timesteps=6)
    assert [layer.neuron.n for layer in net.layers] == [16, 5] and net.layers[0].neuron.du == 1023
    x = (np.random.default_rng(0).random((6, 5, 20)) < 0.6).astype(np.uint8)
    theirs = run_netx(tmp_path / "s.net", x, 6, 2)
    ours = simulate(net, x)
    assert sum(int(s.sum()) for s in ours.spikes) > 0 and np.array_equal(ours.spikes[-1], theirs)


@pytest.mark.lava_env  # lava-dl's slayer runs in the test process
def test_import_refuses_unsupported_layers(tmp_path):
    import h5py
    from qsnn_lava.converters.netx import import_netx

    slayer_netx(tmp_path / "s.net")
    with h5py.File(tmp_path / "s.net", "a") as f:
        del f["layer/1/neuron/type"]
        f["layer/1/neuron/type"] = b"SDNN"
    with pytest.raises(QsnnError, match="layer 1: neuron type 'SDNN' is not supported"):
        import_netx(tmp_path / "s.net", timesteps=4)
    with h5py.File(tmp_path / "s.net", "a") as f:
        del f["layer/1/type"]
        f["layer/1/type"] = b"pool"
    with pytest.raises(QsnnError, match="layer 1: layer type 'pool'"):
        import_netx(tmp_path / "s.net", timesteps=4)


def test_non_square_conv_round_trips_through_lava_dls_netx(tmp_path):
    """netx files hold conv stride and padding in (H, W) order (lava-dl's create_conv reverses them, like
    the shape and kernel, for Lava's (W, H) Conv): a non-square conv on a non-square map, exported, runs
    in lava-dl's own netx loader exactly like our reference, and imports back to the same IR."""
    from qsnn_lava.converters.netx import import_netx
    from qsnn_lava.deployment.verify import compare
    from qsnn_lava.ir import LIF, Conv, Dense, Layer, Network

    rng = np.random.default_rng(3)
    c1 = Conv(rng.integers(-4, 6, (3, 2, 3, 2)), (2, 7, 10), stride=(1, 2), padding=(1, 0))  # -> (3, 7, 5)
    c2 = Conv(rng.integers(-4, 6, (4, 3, 2, 3)), c1.out_shape, stride=(2, 1), padding=(0, 1))  # -> (4, 3, 5)
    fc = Dense(rng.integers(-5, 8, (5, c2.n_out)))
    net = Network((2, 7, 10), [Layer("c1", c1, LIF(c1.n_out, vth=3, du=4095, dv=2048)),
                               Layer("c2", c2, LIF(c2.n_out, vth=4, du=4095, dv=2048)),
                               Layer("fc", fc, LIF(5, vth=6, du=4095, dv=2048))], 4).validate()
    assert (c1.out_shape, c2.out_shape) == ((3, 7, 5), (4, 3, 5))
    x = random_spikes(rng, net, 4)
    ref = simulate(net, x)
    assert all(int(s.sum()) > 0 for s in ref.spikes)
    export_netx(net, tmp_path / "c.net")
    out = run_netx(tmp_path / "c.net", x, net.timesteps, len(net.layers), input_shape=net.input_shape)
    assert np.array_equal(out, ref.spikes[-1])
    back = import_netx(tmp_path / "c.net", net.timesteps)
    assert [(s.synapse.stride, s.synapse.padding) for s in back.layers[:2]] == [((1, 2), (1, 0)), ((2, 1), (0, 1))]
    assert compare(ref, simulate(back, x))["mismatches"] == 0


def test_recurrent_dense_round_trips_through_lava_dls_netx(tmp_path):
    """A recurrent dense layer is netx's dense_rec (lava-dl's RecurrentDense block): exported, it runs in
    lava-dl's own netx loader exactly like our reference, and imports back to the same IR."""
    from qsnn_lava.converters.netx import import_netx
    from qsnn_lava.ir import LIF, Dense, Layer, Network

    rng = np.random.default_rng(5)
    layers = [Layer("r0", Dense(rng.integers(-60, 61, (8, 10))), LIF(8, vth=20, du=300, dv=200,
                                                                      bias_mant=rng.integers(-2, 4, 8), bias_exp=6),
                    recurrent=Dense(rng.integers(-40, 41, (8, 8)), weight_exp=1)),
              Layer("out", Dense(rng.integers(-50, 70, (5, 8))), LIF(5, vth=30, du=4095, dv=100),
                    recurrent=Dense(rng.integers(-90, 91, (5, 5))))]
    net = Network((10,), layers, 5).validate()
    x = random_spikes(rng, net, 4)
    ref = simulate(net, x)
    assert ref.spikes[0][-1].sum() > 0 and ref.spikes[-1].sum() > 0  # last-step spikes: the boundary matters
    export_netx(net, tmp_path / "r.net")
    out = run_netx(tmp_path / "r.net", x, net.timesteps, len(net.layers))
    assert np.array_equal(out, ref.spikes[-1])
    back = import_netx(tmp_path / "r.net", net.timesteps)
    assert [layer.recurrent is not None for layer in back.layers] == [True, True]
    assert all(np.array_equal(simulate(back, x).spikes[i], ref.spikes[i]) for i in range(2))


def test_netx_refuses_recurrence_it_cannot_express(tmp_path):
    from qsnn_lava.ir import LIF, Conv, Dense, Layer, Network

    conv = Conv(np.ones((1, 1, 2, 2), int), in_shape=(1, 3, 3))
    net = Network((1, 3, 3), [Layer("c", conv, LIF(4, vth=1, du=0, dv=0), recurrent=Dense(np.eye(4, dtype=int)))], 2)
    with pytest.raises(QsnnError, match="layer 0 \\(c\\): a recurrent synapse on a conv layer"):
        export_netx(net, tmp_path / "n.net")
    net = Network((2,), [Layer("d", Dense([[200, 1]]), LIF(1, vth=1, du=0, dv=0), recurrent=Dense([[-3]]))], 2)
    with pytest.raises(QsnnError, match="layer 0 \\(d\\): netx's dense_rec gives the main and recurrent weights one"):
        export_netx(net, tmp_path / "n.net")
    net.layers[0].recurrent = Dense([[3]], weight_exp=-1)
    with pytest.raises(QsnnError, match="recurrent weight_exp = -1"):
        export_netx(net, tmp_path / "n.net")
    assert not (tmp_path / "n.net").exists()
