"""Conv, pooling and residual networks: IR checks, and reference == real Lava (fixed_pt), spike for spike."""
import numpy as np
import pytest

from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from netgen import random_spikes
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import INPUT, LIF, Conv, Dense, Layer, Network, Skip, sum_pool
from qsnn_lava.reference import simulate


def lif(n, rng, bias=True):
    return LIF(n, vth=int(rng.integers(2, 30)), du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
               bias_mant=rng.integers(-10, 20, n) if bias else None, bias_exp=int(rng.integers(0, 3)))


def conv_net(rng, timesteps=4):
    """input 2x8x8 -> conv3x3 s1 p1 (4ch) -> sum-pool 2 -> grouped conv s2 p1 (groups 2) -> dense 5."""
    c1 = Conv(rng.integers(-7, 8, (4, 2, 3, 3)), (2, 8, 8), stride=1, padding=1)
    pool = sum_pool(c1.out_shape, 2)
    c2 = Conv(rng.integers(-7, 8, (6, 2, 3, 3)), pool.out_shape, stride=2, padding=1, groups=2)
    fc = Dense(rng.integers(-9, 10, (5, c2.n_out)), weight_exp=-1)
    layers = [Layer("conv1", c1, lif(c1.n_out, rng)), Layer("pool", pool, LIF(pool.n_out, vth=0, du=4095, dv=4095)),
              Layer("conv2", c2, lif(c2.n_out, rng)), Layer("fc", fc, lif(5, rng))]
    return Network((2, 8, 8), layers, timesteps).validate()


def residual_net(rng, timesteps=5):
    """conv -> conv -> conv (+ identity skip over two layers from conv1) -> dense (+ dense skip from input)."""
    shape = (3, 6, 6)
    c = [Conv(rng.integers(-6, 7, (3, 3, 3, 3)), shape, padding=1) for _ in range(3)]
    ident = Conv(np.full((3, 1, 1, 1), 5), shape, groups=3)  # identity x 5, the residual shortcut
    fc = Dense(rng.integers(-5, 6, (4, 108)))
    skip_in = Dense(rng.integers(-3, 4, (4, 108)))
    layers = [Layer("c1", c[0], lif(108, rng)), Layer("c2", c[1], lif(108, rng)),
              Layer("c3", c[2], lif(108, rng), skips=[Skip("c1", ident)]),
              Layer("fc", fc, lif(4, rng), skips=[Skip(INPUT, skip_in)])]
    return Network(shape, layers, timesteps).validate()


def reference_equals_lava(net, x):
    """Reference == real Lava spike for spike, with every layer spiking (a silent layer proves nothing)."""
    ref, lava = simulate(net, x), run_lava(net, x)
    c = compare(ref, lava)
    assert c["mismatches"] == 0, c["first_divergence"]
    assert all(int(s.sum()) > 0 for s in ref.spikes)
    return ref


def test_conv_output_shape_and_pool_are_torch_conventions():
    c = Conv(np.ones((4, 1, 3, 5), int), (2, 9, 11), stride=(2, 3), padding=(1, 2), groups=2)
    assert c.out_shape == (4, 5, 4)
    p = sum_pool((3, 8, 6), 2)
    assert p.out_shape == (3, 4, 3) and p.groups == 3 and (p.weight == 1).all()


def test_reference_conv_equals_hand_computed_sum():
    net = Network((1, 3, 3), [Layer("c", Conv(np.arange(9).reshape(1, 1, 3, 3) - 4, (1, 3, 3), padding=1),
                                    LIF(9, vth=1000, du=4095, dv=0))], 1)
    x = np.zeros((1, 1, 9), np.uint8)
    x[0, 0, 4] = 1  # the centre pixel: output (y, x) gets weight[1 - (y - 1), 1 - (x - 1)]
    from qsnn_lava.reference import trace
    u, _ = trace(net, x, 0)
    assert (u[0] // 64).tolist() == (np.arange(9)[::-1] - 4).tolist()


@pytest.mark.lava
@pytest.mark.parametrize("seed", [0, 2])  # seeds whose random layers all spike
def test_conv_pool_dense_network_matches_lava(seed):
    rng = np.random.default_rng(seed)
    net = conv_net(rng)
    reference_equals_lava(net, random_spikes(rng, net, 6))


@pytest.mark.lava
def test_residual_skips_are_delayed_to_match():
    rng = np.random.default_rng(3)
    net = residual_net(rng)
    x = random_spikes(rng, net, 6)
    ref = reference_equals_lava(net, x)
    # the skips matter: without them the reference spikes differ
    plain = Network(net.input_shape, [Layer(layer.name, layer.synapse, layer.neuron) for layer in net.layers],
                    net.timesteps)
    assert compare(ref, simulate(plain, x))["mismatches"] > 0


def test_conv_ir_round_trip_and_checks(tmp_path):
    rng = np.random.default_rng(1)
    net = residual_net(rng)
    net.save(tmp_path / "r.h5")
    back = Network.load(tmp_path / "r.h5")
    assert [s.source for s in back.layers[2].skips] == ["c1"]
    x = random_spikes(rng, net, 3)
    assert compare(simulate(net, x), simulate(back, x))["mismatches"] == 0
    bad = Network((3, 6, 6), [Layer("c", Conv(np.ones((2, 3, 3, 3), int), (3, 5, 5)), LIF(18, vth=1, du=0, dv=0))], 2)
    with pytest.raises(QsnnError, match="expects 75 inputs"):
        bad.check_structure()
    with pytest.raises(QsnnError, match="weight_exp"):
        Network((1, 4, 4), [Layer("c", Conv(np.ones((1, 1, 3, 3), int), (1, 4, 4), weight_exp=1),
                                  LIF(4, vth=1, du=0, dv=0))], 2).validate()
    with pytest.raises(QsnnError, match="not an earlier layer"):
        Network((4,), [Layer("a", Dense(np.ones((2, 4), int)), LIF(2, vth=1, du=0, dv=0),
                             skips=[Skip("zzz", Dense(np.ones((2, 4), int)))])], 2).check_structure()


def _trained_conv_model(arch, bn, epochs=3, **kw):
    from qsnn_lava.data import load_dataset
    from qsnn_lava.models import make_config
    from qsnn_lava.training import train

    data = load_dataset("digits")
    cfg = make_config(arch=arch, sizes=[64, 10], input_shape=data.shape, channels=[4, 8], bn=bn, timesteps=4, **kw)
    model, hist = train(cfg, data, epochs=epochs, batch_size=64, progress=False)
    return model, data, hist


@pytest.mark.lava
@pytest.mark.parametrize("arch,bn", [("vgg", True), ("resnet", True)])
def test_trained_conv_models_deploy_exactly(arch, bn):
    """A trained VGG / ResNet (BatchNorm folded) converts, and torch eval == reference == Lava."""
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.data import encoded
    from qsnn_lava.training import evaluate

    model, data, hist = _trained_conv_model(arch, bn)
    assert hist["test_acc"][-1] > 0.3  # it learns (10 classes, chance 0.1)
    net = model_to_ir(model)
    if bn:
        assert any(np.any(layer.neuron.bias_mant) for layer in net.layers)  # the folded shift is a bias
    assert any(layer.skips for layer in net.layers) == (arch == "resnet")
    x, y = encoded(data.test, net.timesteps, 12)
    torch_rec, ref = evaluate(model, x), simulate(net, x)
    assert compare(torch_rec, ref)["mismatches"] == 0
    c = compare(ref, run_lava(net, x))
    assert c["mismatches"] == 0, c["first_divergence"]


def test_netx_refuses_residual_layers_by_name(tmp_path):
    from qsnn_lava.converters.netx import export_netx

    net = residual_net(np.random.default_rng(0))
    for layer in net.layers:
        layer.neuron.bias_mant[:] = 0
    with pytest.raises(QsnnError, match="layer 2 \\(c3\\).*residual"):
        export_netx(net, tmp_path / "n.net")
    assert not (tmp_path / "n.net").exists()


@pytest.mark.lava
def test_conv_pool_dense_network_round_trips_through_netx(tmp_path):
    """export-netx of a conv + pool + dense net: lava-dl's own netx Network gives our spikes, and
    import-netx gives back the same IR integers."""
    from qsnn_lava.converters.netx import export_netx, import_netx
    from qsnn_lava.deployment.backends.netx import run_netx

    rng = np.random.default_rng(0)
    net = conv_net(rng)
    for layer in net.layers:  # netx biases are multiples of 64 (bias_exp 6), one per conv channel
        layer.neuron.bias_mant[:], layer.neuron.bias_exp = 0, 0
    net.layers[-1].synapse.weight_exp = 0
    x = random_spikes(rng, net, 5)
    ref = simulate(net, x)
    assert int(ref.spikes[-1].sum()) > 0
    export_netx(net, tmp_path / "c.net")
    out = run_netx(tmp_path / "c.net", x, net.timesteps, len(net.layers), input_shape=net.input_shape)
    assert np.array_equal(out, ref.spikes[-1])
    back = import_netx(tmp_path / "c.net", net.timesteps)
    assert [layer.synapse.type for layer in back.layers] == ["conv", "conv", "conv", "dense"]
    assert compare(ref, simulate(back, x))["mismatches"] == 0


def test_simulate_takes_input_in_the_networks_shape(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    net = conv_net(rng)
    net.save(tmp_path / "c.h5")
    x = random_spikes(rng, net, 3)  # [T, N, n]
    shaped = np.transpose(x, (1, 0, 2)).reshape(3, net.timesteps, *net.input_shape)
    np.save(tmp_path / "x.npy", shaped)
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", "simulate", str(tmp_path / "c.h5"), "--input",
                        str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = np.load(tmp_path / "y.npy")
    assert np.array_equal(out, np.transpose(simulate(net, x).spikes[-1], (1, 0, 2)))


@pytest.mark.lava
def test_bn_folded_vgg_with_bias_exp_6_exports_to_netx_exactly(tmp_path):
    """bias_exp_min = 6 keeps folded biases in whole weight units, so lava-dl's netx runs the trained
    BN-folded conv net spike for spike like our reference."""
    from qsnn_lava.converters.checkpoint import model_to_ir
    from qsnn_lava.converters.netx import export_netx
    from qsnn_lava.deployment.backends.netx import run_netx
    from qsnn_lava.data import encoded

    model, data, _ = _trained_conv_model("vgg", True, epochs=1, bias_exp_min=6)
    net = model_to_ir(model)
    assert all(layer.neuron.bias_exp >= 6 for layer in net.layers if np.any(layer.neuron.bias_mant))
    export_netx(net, tmp_path / "v.net")
    x, _ = encoded(data.test, net.timesteps, 8)
    ref = simulate(net, x)
    out = run_netx(tmp_path / "v.net", x, net.timesteps, len(net.layers), input_shape=net.input_shape)
    assert int(ref.spikes[-1].sum()) > 0 and np.array_equal(out, ref.spikes[-1])


def test_a_training_step_updates_batchnorm_statistics_once():
    """The folded weights and the folded bias come from one set of batch statistics: one forward, one
    running-statistics update (momentum 0.1 applied once)."""
    import torch

    from qsnn_lava.models import QuantConv

    conv = QuantConv((2, 6, 6), 3, 3, "uniform", 4, padding=1, bn=True).train()
    s = (torch.rand(4, 5, 2, 6, 6) < 0.5).float()
    conv(s)
    assert int(conv.bn.num_batches_tracked) == 1
    a = torch.nn.functional.conv2d(s.flatten(0, 1), conv.weight.detach(), padding=1)
    assert torch.allclose(conv.bn.running_mean, 0.1 * a.mean((0, 2, 3)), atol=1e-6)
