"""Operation counts and energy estimates (deploy.energy) against numbers worked out by hand."""
import json

import numpy as np
import pytest

from deploy import energy as en
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Dense, Layer, Network
from qsnn_lava.reference import simulate


def memoryless(n, vth=1, **kw):
    """du = dv = 4095: u = a << 6 and v forgets (|v| < 4096), so a neuron spikes at t iff a_t > vth."""
    return LIF(n, vth=vth, du=4095, dv=4095, **kw)


W0 = [[2, 0, 3],
      [1, 1, 0]]
W1 = [[2, 1]]

# x[t, sample, input]
X = np.array([[[1, 0, 0], [0, 1, 0]],
              [[1, 1, 1], [0, 0, 1]],
              [[0, 0, 0], [1, 1, 0]]], np.uint8)


@pytest.fixture
def hand():
    net = Network((3,), [Layer("l0", Dense(W0), memoryless(2), weight_bits=4),
                         Layer("l1", Dense(W1), memoryless(1), weight_bits=4)], timesteps=3).validate()
    rec = simulate(net, X)
    return net, rec, en.count_ops(net, X, rec)


def test_hand_network_spikes(hand):
    """a = W x; spike iff a > 1. l0 a: s0 [2,1] [5,2] [0,0], s1 [0,1] [3,0] [2,2]; l1 a = 2*s_a + s_b."""
    _, rec, _ = hand
    np.testing.assert_array_equal(rec.spikes[0][:, 0], [[1, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(rec.spikes[0][:, 1], [[0, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(rec.spikes[1][:, :, 0], [[1, 0], [1, 1], [0, 1]])


def test_hand_counts(hand):
    _, _, c = hand
    l0, l1 = c["layers"]
    # input spikes per source over t and both samples: [3, 3, 2]; nonzero fan-out of W0's columns: [2, 1, 1]
    assert l0["input_spikes"] == 8 / 2
    assert l0["synops_effective"] == (3 * 2 + 3 * 1 + 2 * 1) / 2  # 5.5
    assert l0["synops_dense"] == 8 * 2 / 2  # 8
    assert l0["spikes"] == 6 / 2 and l1["spikes"] == 4 / 2
    assert l1["synops_effective"] == l1["synops_dense"] == 6 * 1 / 2
    # active: l0 n0 (sources 0, 2) 4 of 6 steps, n1 (sources 0, 1) 4 of 6; l1 4 of 6 (over both samples)
    assert l0["neuron_updates"] == 6 and l1["neuron_updates"] == 3
    assert l0["neuron_updates_active"] == 8 / 2 and l0["neuron_updates_idle"] == 6 - 4
    assert l1["neuron_updates_active"] == 4 / 2 and l1["neuron_updates_idle"] == 3 - 2
    assert l0["firing_rate"] == pytest.approx(3 / 6) and l1["firing_rate"] == pytest.approx(2 / 3)
    assert l0["input_rate"] == pytest.approx(4 / 9) and l0["input_sparsity"] == pytest.approx(5 / 9)
    assert l1["input_rate"] == pytest.approx(3 / 6)
    assert l0["ann_macs"] == 6 and l1["ann_macs"] == 2
    assert l0["nonzero_weights"] == 4 and l0["weights"] == 6
    t = c["total"]
    assert t["synops_effective"] == 8.5 and t["synops_dense"] == 11
    assert t["dense_ops"] == (6 + 2) * 3 and t["ann_macs"] == 8
    assert t["neuron_updates_active"] == 6 and t["neuron_updates_idle"] == 3
    assert t["memory_weight_bits"] == 8 * 4 and t["memory_state_bits"] == 3 * 48
    assert t["memory_bytes"] == (32 + 144) / 8
    nb = en.neurobench_metrics(c)
    assert nb["footprint"] == 22
    assert nb["activation_sparsity"] == pytest.approx(1 - 5 / 9)
    assert nb["synaptic_operations"] == {"Effective_MACs": 0.0, "Effective_ACs": 8.5, "Dense": 24.0}


def test_zero_weight_reduces_effective_not_dense_synops():
    """Same input, one weight set to 0 (threshold too high to spike either way): effective drops by the
    spikes of that source, dense does not change."""
    w = np.full((2, 3), 5)
    x = np.array([[[1, 1, 0]], [[1, 0, 1]], [[0, 1, 1]], [[1, 0, 0]]], np.uint8)  # source 0 spikes 3 times
    counts = []
    for weight in (w, np.where(np.arange(6).reshape(2, 3) == 0, 0, w)):  # w[0, 0] = 0
        net = Network((3,), [Layer("l", Dense(weight), memoryless(2, vth=1000))], timesteps=4).validate()
        counts.append(en.count_ops(net, x, simulate(net, x))["total"])
    full, pruned = counts
    assert full["synops_dense"] == pruned["synops_dense"] == 7 * 2
    assert full["synops_effective"] == 14 and pruned["synops_effective"] == 14 - 3
    assert full["spikes"] == pruned["spikes"] == 0


def test_bias_driven_spike_is_an_active_update():
    """No input at all, but bias 100 > vth << 6 = 64: the neuron spikes every step, so every update is active."""
    net = Network((2,), [Layer("b", Dense([[1, 1]]), memoryless(1, bias_mant=[100]))], timesteps=3).validate()
    x = np.zeros((3, 2, 2), np.uint8)
    c = en.count_ops(net, x, simulate(net, x))["layers"][0]
    assert c["spikes"] == 3 and c["neuron_updates_active"] == 3 and c["synops_effective"] == 0


def test_energy_with_builtin_tables(hand):
    _, _, c = hand
    e = en.energy(c, en.TABLES["loihi1"])
    assert e["total"]["pJ"] == pytest.approx(8.5 * 23.6 + 6 * 81 + 3 * 52 + 5 * 1.7)
    assert e["total"]["uJ"] == pytest.approx(e["total"]["pJ"] * 1e-6)
    assert e["layers"][0]["pJ"] == pytest.approx(5.5 * 23.6 + 4 * 81 + 2 * 52 + 3 * 1.7)
    assert "Loihi 1" in e["label"] and "not Loihi 2" in e["label"] and "Davies" in e["source"]
    assert en.energy(c, en.TABLES["ann_int8"])["total"]["pJ"] == pytest.approx(8 * 0.23)
    assert en.energy(c, en.TABLES["ann_fp32"])["total"]["pJ"] == pytest.approx(8 * 4.6)
    assert en.energy(c, en.TABLES["cmos45_snn"])["total"]["pJ"] == pytest.approx(8.5 * 0.1 + 9 * 6.6)


def test_custom_cost_table_from_json(hand, tmp_path):
    _, _, c = hand
    p = tmp_path / "mychip.json"
    p.write_text(json.dumps({"kind": "snn", "synop_pJ": 1, "neuron_update_active_pJ": 10,
                             "neuron_update_idle_pJ": 100, "spike_pJ": 1000}))
    table = en.load_cost_table(p)
    assert table["name"] == "mychip" and table["label"] == "user cost table"
    e = en.energy(c, table)
    assert e["total"]["pJ"] == pytest.approx(8.5 + 60 + 300 + 5000)
    md = en.compare_table([en.energy(c, en.TABLES["loihi1"]), e, en.energy(c, en.TABLES["ann_int8"])])
    assert "| loihi1 |" in md and "| mychip |" in md and "ratio to loihi1" in md
    assert f"{e['total']['pJ'] / en.energy(c, en.TABLES['loihi1'])['total']['pJ']:.3g}" in md
    png = tmp_path / "energy.png"
    en.energy_bar_chart([en.energy(c, t) for t in en.TABLES.values()], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


GOOD = {"kind": "snn", "synop_pJ": 1.0, "neuron_update_active_pJ": 2.0, "neuron_update_idle_pJ": 1.0,
        "spike_pJ": 0.5}


@pytest.mark.parametrize("change, key", [
    ({"synop_pJ": None}, "synop_pJ"),  # None = remove the key
    ({"spike_pJ": -1.0}, "spike_pJ"),
    ({"neuron_update_idle_pJ": "52"}, "neuron_update_idle_pJ"),
    ({"neuron_update_active_pJ": True}, "neuron_update_active_pJ"),
    ({"kind": "ann"}, "mac_pJ"),
    ({"kind": "fpga"}, "kind"),
])
def test_bad_cost_tables_are_rejected(tmp_path, change, key):
    table = {**GOOD, **change}
    table = {k: v for k, v in table.items() if v is not None}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(table))
    with pytest.raises(QsnnError, match=f"'{key}'") as e:
        en.load_cost_table(p)
    assert "bad.json" in str(e.value)


def test_unreadable_cost_table(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("{not json")
    with pytest.raises(QsnnError, match="t.json"):
        en.load_cost_table(p)
    with pytest.raises(QsnnError, match="not found"):
        en.load_cost_table(tmp_path / "missing.json")


def test_shape_mismatch_is_an_error(hand):
    net, rec, _ = hand
    with pytest.raises(QsnnError, match="shape"):
        en.count_ops(net, X[:2], rec)


@pytest.mark.lava
def test_counts_from_reference_equal_counts_from_lava():
    from deploy.backends.lava import run as run_lava
    from netgen import random_network, random_spikes

    rng = np.random.default_rng(5)
    net = random_network(rng, sizes=(12, 9, 6), timesteps=5)
    x = random_spikes(rng, net, n_samples=7)
    ref = en.count_ops(net, x, simulate(net, x))
    lava = en.count_ops(net, x, run_lava(net, x))
    assert ref["total"]["spikes"] > 0
    assert ref == lava
