"""Direct (graded) input and learned thresholds: exact end to end, torch eval == reference == Lava."""
import h5py
import numpy as np
import pytest
import torch

from qsnn_lava import dynamics as dyn
from qsnn_lava.bounds import static_bounds
from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.data import check_spike_array, direct_encode, encoded, load_dataset, rate_encode
from qsnn_lava.deployment.energy import TABLES, count_ops, energy, neurobench_metrics
from qsnn_lava.deployment.verify import compare
from qsnn_lava.errors import QsnnError
from qsnn_lava.io import save_checkpoint
from qsnn_lava.ir import LIF, Dense, Layer, Network
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import check_recipe, evaluate, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_direct_code_quantises_and_repeats():
    x = np.array([[0, 1, 8, 15, 16]])  # digits levels = 16; 2 bits: q = round(x * 3 / 16), half up
    q = direct_encode(x, 16, timesteps=3, bits=2)
    assert q.shape == (3, 1, 5) and q.dtype == np.uint8
    assert q[0, 0].tolist() == [0, 0, 2, 3, 3] and (q == q[0]).all()  # 8 * 3 / 16 = 1.5 rounds up to 2
    assert direct_encode(np.array([[255]]), 255, 1, 8).item() == 255
    with pytest.raises(QsnnError, match="2 to 8 bits"):
        direct_encode(x, 16, 3, bits=1)


def test_rate_code_stays_the_default(digits):
    x, _ = encoded(digits.test, 4, samples=5)
    assert np.array_equal(x, rate_encode(digits.test.x[:5], 16, 4))
    g, _ = encoded(digits.test, 4, samples=5, input_bits=4)
    assert g.max() > 1 and np.array_equal(g[0], direct_encode(digits.test.x[:5], 16, 1, 4)[0])


def test_graded_input_values_are_checked():
    assert check_spike_array(np.array([[0, 7, 15]]), "x", input_bits=4).tolist() == [[0, 7, 15]]
    for bad in (16, -1, 2.5, np.nan):
        with pytest.raises(QsnnError, match=r"whole numbers in \[0, 15\]"):
            check_spike_array(np.array([[0.0, bad]]), "x", input_bits=4)
    with pytest.raises(QsnnError, match="binary spikes"):
        check_spike_array(np.array([[0, 2]]), "x")


def test_config_keys_and_refusals():
    old = {k: v for k, v in make_config().items() if k not in ("input", "input_bits", "learn_threshold")}
    from qsnn_lava.models import QSNN
    assert QSNN(old).input_bits == 1  # a config from before these keys: rate input
    assert QSNN(make_config(input="direct", input_bits=6)).input_bits == 6
    with pytest.raises(QsnnError, match="input_bits"):
        make_config(input="direct", input_bits=1)
    with pytest.raises(QsnnError, match="input 'graded' is not supported"):
        make_config(input="graded")
    with pytest.raises(QsnnError, match="qmem"):
        make_config(neuron="qmem", learn_threshold=True)
    with pytest.raises(QsnnError, match="unknown training option 'dropout'"):
        check_recipe({"dropout": 0.1})
    with pytest.raises(QsnnError, match="label_smoothing"):
        check_recipe({"label_smoothing": 1.5})


def test_ir_records_input_bits(tmp_path):
    net = Network((3,), [Layer("out", Dense([[1, 2, -1]]), LIF(1, vth=5, du=4095, dv=0))], 2, input_bits=4)
    net.save(tmp_path / "g.h5")
    assert Network.load(tmp_path / "g.h5").input_bits == 4
    with h5py.File(tmp_path / "g.h5", "a") as f:  # an older file has no attribute: 0/1 spikes
        del f.attrs["input_bits"]
    assert Network.load(tmp_path / "g.h5").input_bits == 1
    with h5py.File(tmp_path / "g.h5", "a") as f:
        f.attrs["input_bits"] = 30
    with pytest.raises(QsnnError, match=r"input_bits' = 30 must be a whole number in \[1, 8\]"):
        Network.load(tmp_path / "g.h5")


def test_graded_input_scales_the_worst_case():
    """The same weights are legal for 0/1 spikes and overflow Lava's int32 update with 8-bit input."""
    w = np.full((1, 1024), 127)
    layer = Layer("l", Dense(w, weight_exp=2), LIF(1, vth=10, du=4095, dv=4095))
    assert Network((1024,), [layer], 2).violations() == []
    bad = Network((1024,), [layer], 2, input_bits=8).violations()
    assert [v.field for v in bad] == ["worst-case synaptic input << 6"]
    b1 = static_bounds(Network((1024,), [layer], 2))["l"]["u_bound"]
    b4 = static_bounds(Network((1024,), [layer], 2, input_bits=4))["l"]["u_bound"]
    assert b4 == 15 * b1


def test_accumulate_is_exact_for_graded_input():
    """Row sums below 2^24 but times 255 above it: float32 would round, the bound picks float64."""
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.integers(100, 128, (8, 4096)))  # one sign: partial sums reach 2^26
    x = torch.from_numpy(rng.integers(200, 256, (3, 4096)))
    exact = x @ w.t()
    assert torch.equal(dyn.dense_accumulate(x, w), exact)
    assert not torch.equal((x.float() @ w.t().float()).long(), exact)  # the case float32 gets wrong
    wc = torch.from_numpy(rng.integers(100, 128, (2, 64, 16, 16)))
    xc = torch.from_numpy(rng.integers(200, 256, (1, 64, 16, 16)))
    ref = torch.nn.functional.conv2d(xc.double(), wc.double()).long()
    assert torch.equal(dyn.conv_accumulate(xc, wc), ref)


def _trained(digits, arch, **cfg):
    kw = dict(sizes=[64, 24, 10]) if arch == "mlp" else dict(sizes=[64, 10], input_shape=digits.shape,
                                                             channels=[4, 8])
    c = make_config(arch=arch, timesteps=3, **kw, **cfg)
    model, _ = train(c, digits, epochs=1, lr=1e-2, progress=False)
    return model


def _three_way(model, digits, samples=12):
    """torch eval, reference and real Lava on the test split's first ``samples``: every layer identical."""
    from qsnn_lava.deployment.backends.lava import run as run_lava

    net = model_to_ir(model)
    x, _ = encoded(digits.test, net.timesteps, samples, input_bits=net.input_bits)
    tr, ref = evaluate(model, x), simulate(net, x)
    assert compare(tr, ref)["mismatches"] == 0
    lava = run_lava(net, x)
    c = compare(ref, lava)
    assert c["mismatches"] == 0, c["first_divergence"]
    assert sum(int(s.sum()) for s in ref.spikes) > 0
    return net, x


@pytest.mark.lava
@pytest.mark.parametrize("arch", ["mlp", "vgg"])
def test_direct_input_torch_reference_lava(digits, arch):
    model = _trained(digits, arch, input="direct", input_bits=4)
    net, x = _three_way(model, digits)
    assert net.input_bits == 4 and x.max() > 1


@pytest.mark.lava
def test_learned_threshold_deploys_exactly(digits, tmp_path):
    model = _trained(digits, "vgg", input="direct", input_bits=4, learn_threshold=True)
    learned = [layer.neuron for layer in model.quantized_layers()]
    assert any(n.vth != n.vth0 for n in learned)  # the thresholds moved off their start
    path = tmp_path / "lt.pt"
    save_checkpoint(path, model.config, model.state_dict(), {})
    loaded, _ = load_model(path)
    assert [n.neuron.vth for n in loaded.quantized_layers()] == [n.vth for n in learned]
    net, _ = _three_way(loaded, digits)
    assert [layer.neuron.vth for layer in net.layers if layer.name.startswith(("conv", "fc"))] == \
        [n.vth for n in learned]


def test_first_layer_reads_the_input_in_0_1():
    """Direct input q in 0..15 is read as q / 15: the first layer's vth (and nothing after it) scales by 15."""
    from qsnn_lava.models import QSNN

    for arch, kw in (("mlp", dict(sizes=[64, 8, 10])), ("vgg", dict(sizes=[64, 10], input_shape=(1, 8, 8)))):
        rate = QSNN(make_config(arch=arch, **kw))
        direct = QSNN(make_config(arch=arch, input="direct", input_bits=4, **kw))
        vr, vd = ([layer.neuron.vth for layer in m.layers] for m in (rate, direct))
        assert vd[0] == 15 * vr[0] and vd[1:] == vr[1:]


def test_learned_threshold_gets_a_gradient():
    from qsnn_lava.neurons import LIF as TorchLIF

    n = TorchLIF(4, vth=10, du=4095, dv=4095, learn_vth=True).train()
    a = torch.tensor([[[9.0, 10.0, 11.0, 12.0]]], requires_grad=True)
    n(a).sum().backward()
    assert n.vth_scale.grad is not None and n.vth_scale.grad < 0  # a higher threshold means fewer spikes
    with torch.no_grad():
        n.vth_scale.fill_(1.26)
    assert n.vth == 13 and n.eval().threshold() == 13  # round(10 * 1.26), the deployed integer


def test_graded_events_are_macs(digits):
    model = _trained(digits, "vgg", input="direct", input_bits=4)
    net = model_to_ir(model)
    x, _ = encoded(digits.test, net.timesteps, 8, input_bits=4)
    counts = count_ops(net, x, simulate(net, x))
    first = counts["layers"][0]
    events = (x != 0).sum() / 8
    assert first["input_spikes"] == events  # an event per nonzero payload, not per unit of intensity
    assert first["synops_graded"] == first["synops_effective"] > 0
    assert all(layer["synops_graded"] == 0 for layer in counts["layers"][1:])
    nb = neurobench_metrics(counts)["synaptic_operations"]
    assert nb["Effective_MACs"] == first["synops_graded"]
    e = energy(counts, TABLES["cmos45_snn"])["total"]["parts_pJ"]
    assert e["graded_synop"] == pytest.approx(first["synops_graded"] * 3.2)


def test_netx_refuses_graded_input_by_name(tmp_path):
    from qsnn_lava.converters.netx import export_netx

    net = Network((3,), [Layer("out", Dense([[1, 2, -1]]), LIF(1, vth=5, du=4095, dv=0))], 2, input_bits=4)
    with pytest.raises(QsnnError, match="input: 4-bit direct"):
        export_netx(net, tmp_path / "m.net")
    assert not (tmp_path / "m.net").exists()
