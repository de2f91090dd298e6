"""Recurrent synapses (a layer's own spikes, one step later): IR, reference, bounds, metrics and Lava."""
import numpy as np
import pytest
import torch

from netgen import random_spikes
from qsnn_lava import dynamics as dyn
from qsnn_lava.bounds import static_bounds
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Conv, Dense, Layer, Network
from qsnn_lava.metrics import model_size, synops_per_layer
from qsnn_lava.reference import simulate, trace


def recurrent_network(rng, sizes=(10, 8, 5), timesteps=6, wmax=40, rec_layers=(0, 1), rec_exp=None):
    """A small random dense net whose layers in ``rec_layers`` carry a random recurrent Dense."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        rec = None
        if i in rec_layers:
            e = int(rng.integers(-1, 2)) if rec_exp is None else rec_exp
            rec = Dense(rng.integers(-wmax, wmax + 1, (b, b)), weight_exp=e)
        layers.append(Layer(f"r{i}", Dense(rng.integers(-wmax, wmax + 1, (b, a)), weight_exp=int(rng.integers(-1, 2))),
                            LIF(b, vth=int(rng.integers(5, 60)), du=int(rng.integers(0, 4096)),
                                dv=int(rng.integers(0, 4096)), bias_mant=rng.integers(-10, 30, b), bias_exp=1),
                            recurrent=rec))
    return Network((sizes[0],), layers, timesteps).validate()


def loop_reference(net, x):
    """The recurrence written out by hand, one neuron update at a time with dynamics.lif_step."""
    s = torch.from_numpy(x.astype(np.int64))
    outs = []
    for layer in net.layers:
        nrn = layer.neuron
        p = dyn.LIFParams(vth=nrn.vth, du=nrn.du, dv=nrn.dv, bias=dyn.effective_bias(
            torch.from_numpy(nrn.bias_mant), nrn.bias_exp))
        a_ff = dyn.dense_accumulate(s, torch.from_numpy(layer.synapse.weight), layer.synapse.weight_exp)
        state, prev, out = dyn.lif_init(a_ff.shape[1:], a_ff), torch.zeros_like(a_ff[0]), []
        for t in range(a_ff.shape[0]):
            a = a_ff[t]
            if layer.recurrent is not None:
                a = a + dyn.dense_accumulate(prev, torch.from_numpy(layer.recurrent.weight),
                                             layer.recurrent.weight_exp)
            prev, state = dyn.lif_step(a, state, p)
            out.append(prev)
        s = torch.stack(out)
        outs.append(s.numpy().astype(np.uint8))
    return outs


def test_reference_is_the_one_step_recurrence():
    rng = np.random.default_rng(0)
    net = recurrent_network(rng)
    x = random_spikes(rng, net, 7)
    ref = simulate(net, x)
    for got, want in zip(ref.spikes, loop_reference(net, x)):
        assert np.array_equal(got, want)
    # the recurrence matters: without it the spikes differ
    for layer in net.layers:
        layer.recurrent = None
    assert any(not np.array_equal(a, b) for a, b in zip(simulate(net, x).spikes, ref.spikes))


def test_one_step_delay_by_hand():
    """A single neuron fed by one input spike at t = 0 that excites itself: it fires at every step, and a
    neuron inhibiting itself after its first spike fires every other step."""
    net = Network((1,), [Layer("r", Dense([[4]]), LIF(1, vth=3, du=4095, dv=4095), recurrent=Dense([[4]]))], 5)
    x = np.zeros((5, 1, 1), np.uint8)
    x[0] = 1
    assert simulate(net, x).spikes[0].ravel().tolist() == [1, 1, 1, 1, 1]
    net = Network((1,), [Layer("r", Dense([[4]]), LIF(1, vth=3, du=4095, dv=4095), recurrent=Dense([[-8]]))], 5)
    assert simulate(net, np.ones((5, 1, 1), np.uint8)).spikes[0].ravel().tolist() == [1, 0, 1, 0, 1]


def test_samples_are_independent():
    rng = np.random.default_rng(1)
    net = recurrent_network(rng)
    x = random_spikes(rng, net, 5)
    together = simulate(net, x).spikes
    for k in range(5):
        alone = simulate(net, x[:, k:k + 1]).spikes
        assert all(np.array_equal(a[:, k:k + 1], b) for a, b in zip(together, alone))


def test_trace_matches_simulate():
    rng = np.random.default_rng(2)
    net = recurrent_network(rng)
    x = random_spikes(rng, net, 1)
    u, v = trace(net, x, 1)
    assert u.shape == (net.timesteps, net.layers[1].neuron.n) and np.abs(u).sum() > 0


def test_ir_file_round_trip_and_checks(tmp_path):
    rng = np.random.default_rng(3)
    net = recurrent_network(rng)
    net.save(tmp_path / "rec.h5")
    back = Network.load(tmp_path / "rec.h5")
    for a, b in zip(net.layers, back.layers):
        assert (a.recurrent is None) == (b.recurrent is None)
        if a.recurrent is not None:
            assert np.array_equal(a.recurrent.weight, b.recurrent.weight)
            assert a.recurrent.weight_exp == b.recurrent.weight_exp
    x = random_spikes(rng, net, 3)
    assert all(np.array_equal(a, b) for a, b in zip(simulate(net, x).spikes, simulate(back, x).spikes))
    # shape, kind and register width of the recurrent synapse are checked
    bad = Network((3,), [Layer("r", Dense(np.ones((2, 3), int)), LIF(2, vth=1, du=0, dv=0),
                               recurrent=Dense(np.ones((2, 3), int)))], 2)
    with pytest.raises(QsnnError, match=r"layer 0 \(r\): the recurrent weight has shape \(2, 3\)"):
        bad.validate()
    bad.layers[0].recurrent = Dense([[300, 0], [0, -1]])
    with pytest.raises(QsnnError, match="layer 0 \\(r\\) recurrent: weight = 300"):
        bad.validate()
    bad.layers[0].recurrent = Conv(np.ones((2, 1, 1, 1), int), in_shape=(1, 1, 2))
    with pytest.raises(QsnnError, match="recurrent synapse is a conv"):
        bad.validate()


def test_old_version_with_recurrent_group_is_refused(tmp_path):
    import h5py

    rng = np.random.default_rng(4)
    recurrent_network(rng).save(tmp_path / "rec.h5")
    with h5py.File(tmp_path / "rec.h5", "a") as f:
        f.attrs["version"] = 2
    with pytest.raises(QsnnError, match="'recurrent' group, which IR version 2 does not have"):
        Network.load(tmp_path / "rec.h5")
    with h5py.File(tmp_path / "rec.h5", "a") as f:
        f.attrs["version"] = 3
        f["layers/0/recurrent/weight"].attrs["x"] = 0
        del f["layers/0/recurrent/weight"]
        f["layers/0/recurrent"].create_dataset("weight", shape=(1 << 15, 1 << 15), dtype=np.int16)
    with pytest.raises(QsnnError, match="recurrent.*(declares|stores only)"):
        Network.load(tmp_path / "rec.h5")


def test_bounds_and_metrics_include_the_recurrent_synapse():
    rng = np.random.default_rng(5)
    net = recurrent_network(rng, rec_layers=(1,))
    with_rec = static_bounds(net)["r1"]["u_bound"]
    x = random_spikes(rng, net, 4)
    rec = simulate(net, x)
    ops = synops_per_layer(net, x, rec)
    size = model_size(net)["layers"][1]["weights"]
    w_rec = net.layers[1].recurrent.weight
    own = rec.spikes[1].sum(axis=(0, 1), dtype=np.int64)
    expect = own @ (w_rec != 0).sum(axis=0) / 4
    net.layers[1].recurrent = None
    assert with_rec > static_bounds(net)["r1"]["u_bound"]
    assert ops[1] == pytest.approx(synops_per_layer(net, x, rec)[1] + expect)
    assert size == model_size(net)["layers"][1]["weights"] + w_rec.size


def test_static_bound_holds_with_recurrence():
    """Self-excitation at the largest weights: the traced |u| and |v| never exceed the static bound."""
    net = Network((4,), [Layer("r", Dense(np.full((3, 4), 127)), LIF(3, vth=(1 << 17) - 1, du=0, dv=0),
                               recurrent=Dense(np.full((3, 3), 127), weight_exp=3))], 8).validate()
    b = static_bounds(net)["r"]
    u, v = trace(net, np.ones((8, 1, 4), np.uint8), 0)
    assert np.abs(u).max() <= b["u_bound"] and np.abs(v).max() <= max(b["v_bound"], dyn.V_LIMIT)


# ---------------------------------------------------------------------------------------------- Lava
def assert_lava_matches(net, x):
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from qsnn_lava.deployment.verify import compare

    ref, lava = simulate(net, x), run_lava(net, x)
    c = compare(ref, lava)
    assert c["mismatches"] == 0, c["first_divergence"]
    assert sum(int(s.sum()) for s in ref.spikes) > 0
    return ref


@pytest.mark.lava
@pytest.mark.parametrize("seed", range(2))
def test_lava_recurrent_dense_matches_reference(seed):
    rng = np.random.default_rng(10 + seed)
    net = recurrent_network(rng, sizes=(12, 9, 6), timesteps=int(rng.integers(2, 7)))
    x = random_spikes(rng, net, 6)
    ref = assert_lava_matches(net, x)
    # the last step's spikes of a sample must not leak into the next one
    assert ref.spikes[0][-1].sum() > 0


@pytest.mark.lava
def test_lava_recurrent_after_conv_and_near_limits():
    """A recurrent layer over a conv map, then a dense recurrent readout with weights at the 8-bit limits
    (odd mixed weights, even 9-bit weights with a large exponent)."""
    rng = np.random.default_rng(20)
    conv = Conv(rng.integers(-8, 9, (2, 1, 3, 3)), in_shape=(1, 5, 5), padding=1)
    n = conv.n_out
    w_even = 2 * rng.integers(-128, 128, (4, 4))
    w_even[0, 0] = -256
    layers = [Layer("c", conv, LIF(n, vth=6, du=1000, dv=300, bias_mant=2, bias_exp=1),
                    recurrent=Dense(rng.integers(-3, 4, (n, n)) * (rng.random((n, n)) < 0.2))),
              Layer("d", Dense(rng.choice([-128, 127, 1, -1, 0], (4, n)), weight_exp=1),
                    LIF(4, vth=2000, du=50, dv=20), recurrent=Dense(w_even, weight_exp=4))]
    net = Network((1, 5, 5), layers, 5).validate()
    x = random_spikes(rng, net, 5)
    assert_lava_matches(net, x)


# ------------------------------------------------------------------------------------ non-spiking readouts
def readout_network(rng, timesteps=6, du=1000, dv=300):
    from qsnn_lava.ir import Readout

    layers = [Layer("h", Dense(rng.integers(-40, 41, (8, 10))), LIF(8, vth=20, du=300, dv=200, bias_mant=2, bias_exp=3),
                    recurrent=Dense(rng.integers(-20, 21, (8, 8)))),
              Layer("ro", Dense(rng.integers(-60, 61, (4, 8))),
                    Readout(4, du=du, dv=dv, bias_mant=rng.integers(-5, 5, 4), bias_exp=2))]
    return Network((10,), layers, timesteps).validate()


def test_readout_voltage_is_the_lif_dynamics_without_fire():
    rng = np.random.default_rng(30)
    net = readout_network(rng)
    x = random_spikes(rng, net, 5)
    rec = simulate(net, x)
    v = rec.voltages["ro"]
    assert v.dtype == np.int32 and v.shape == (6, 5, 4) and not rec.spikes[-1].any()
    # by hand: the same lif_step with a threshold no 24-bit v reaches, fed the hidden layer's spikes
    nrn, syn = net.layers[1].neuron, net.layers[1].synapse
    a = dyn.dense_accumulate(torch.from_numpy(rec.spikes[0].astype(np.int64)), torch.from_numpy(syn.weight))
    p = dyn.LIFParams(vth=1 << 40, du=nrn.du, dv=nrn.dv,
                      bias=dyn.effective_bias(torch.from_numpy(nrn.bias_mant), nrn.bias_exp))
    _, _, v_hand = dyn.lif_run(a, p, trace=True)
    assert np.array_equal(v, v_hand.numpy()) and np.abs(v).max() > 64 * 20  # above a LIF threshold: no reset
    assert np.array_equal(rec.predictions(), np.argmax(v.sum(axis=0, dtype=np.int64), axis=-1))
    # verification compares a readout by its voltage: one unit off is a mismatch
    from qsnn_lava.deployment.verify import compare
    from qsnn_lava.record import Record

    off = {"ro": v.copy()}
    off["ro"][3, 2, 1] += 1
    c = compare(rec, Record("other", rec.layer_names, rec.spikes, voltages=off))
    assert c["per_layer"] == {"h": 0, "ro": 1} and c["first_divergence"]["timestep"] == 3


def test_readout_rules_and_file(tmp_path):
    from qsnn_lava.ir import Readout

    rng = np.random.default_rng(31)
    net = readout_network(rng)
    net.save(tmp_path / "ro.h5")
    back = Network.load(tmp_path / "ro.h5")
    assert back.layers[1].neuron.type == "readout"
    x = random_spikes(rng, net, 3)
    assert np.array_equal(simulate(back, x).voltages["ro"], simulate(net, x).voltages["ro"])
    # only last, never recurrent, and v provably below Lava's largest threshold
    first = Layer("ro0", Dense(np.ones((4, 10), int)), Readout(4, du=4095, dv=0))
    with pytest.raises(QsnnError, match="ro0.*must be the last layer"):
        Network((10,), [first] + net.layers[1:], 6).validate()
    net.layers[1].recurrent = Dense(np.eye(4, dtype=int))
    with pytest.raises(QsnnError, match="cannot have a recurrent synapse"):
        net.validate()
    net.layers[1].recurrent = None
    from qsnn_lava.deployment.drc import design_rule_check

    assert design_rule_check(net)["passed"]  # a readout is a native LIF that provably never fires
    loud = Layer("ro", Dense(np.full((2, 10), 127), weight_exp=7), Readout(2, du=0, dv=0))
    drc = design_rule_check(Network((10,), [loud], 8))
    assert [v["field"] for v in drc["violations"]] == ["static |v| bound of a readout"]
    with pytest.raises(QsnnError, match="static \\|v\\| bound of a readout"):
        Network((10,), [loud], 8).validate()


@pytest.mark.lava
def test_lava_readout_voltages_equal_the_reference():
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from qsnn_lava.deployment.verify import compare

    for seed, (du, dv) in enumerate([(1000, 300), (4095, 0)]):  # a CubaLI and an integrator I
        rng = np.random.default_rng(32 + seed)
        net = readout_network(rng, du=du, dv=dv)
        x = random_spikes(rng, net, 5)
        ref, lava = simulate(net, x), run_lava(net, x)
        assert np.abs(ref.voltages["ro"]).max() > 0
        assert np.array_equal(ref.voltages["ro"], lava.voltages["ro"])
        assert compare(ref, lava)["mismatches"] == 0
        assert np.array_equal(ref.predictions(), lava.predictions())


def test_cli_simulate_writes_a_readouts_voltages(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(34)
    net = readout_network(rng)
    net.save(tmp_path / "ro.h5")
    x = random_spikes(rng, net, 4)
    np.save(tmp_path / "in.npy", np.transpose(x, (1, 0, 2)))  # [N, T, n_in]
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", "simulate", str(tmp_path / "ro.h5"), "--input",
                        str(tmp_path / "in.npy"), "--output", str(tmp_path / "out.npy"), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "output voltages" in p.stdout
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == np.int32 and np.array_equal(out, np.transpose(simulate(net, x).voltages["ro"], (1, 0, 2)))
