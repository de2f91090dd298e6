"""Operation counts and energy estimates (deploy.energy) against numbers worked out by hand."""
import json

import numpy as np
import pytest

from qsnn_lava.deployment import energy as en
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import INPUT, LIF, Conv, Dense, Layer, Network, Skip, sum_pool
from qsnn_lava.metrics import synapse_kind
from qsnn_lava.reference import fanout
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
    ({"kind": "ann", "mac_pJ": 1.0, "add_pJ": -0.5}, "add_pJ"),
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


# --- conv, pooling and skips ----------------------------------------------------------------------------
#
# input 1x3x3 -> c: conv 2x2 K (one zero weight), out 1x2x2, spike iff a > 1
#             -> r: identity x 2 from c  +  skip conv 2x2 K2 from the input, spike iff a > 2
#             -> p: 2x2 sum pool of r -> 1 neuron, spike iff a > 0
K = [[1, 0],
     [2, 3]]
K2 = [[0, 1],
      [1, 0]]
# x[t, 0, pixel]: t0 pixels (0,0) and (1,1); t1 every pixel. Spikes per pixel over t: (0,0) and (1,1) 2, others 1
XC = np.array([[[1, 0, 0, 0, 1, 0, 0, 0, 0]], [[1] * 9]], np.uint8)


@pytest.fixture
def conv_hand():
    ident = Conv(np.full((1, 1, 1, 1), 2), (1, 2, 2), groups=1)
    net = Network((1, 3, 3), [
        Layer("c", Conv(np.array(K).reshape(1, 1, 2, 2), (1, 3, 3)), memoryless(4), weight_bits=4),
        Layer("r", ident, memoryless(4, vth=2), weight_bits=4,
              skips=[Skip(INPUT, Conv(np.array(K2).reshape(1, 1, 2, 2), (1, 3, 3)))]),
        Layer("p", sum_pool((1, 2, 2), 2), memoryless(1, vth=0), weight_bits=1)], timesteps=2).validate()
    rec = simulate(net, XC)
    return net, rec, en.count_ops(net, XC, rec)


def test_conv_hand_spikes(conv_hand):
    """c: a = sum K[i,j] x[y+i, x+j]: t0 [4, 2, 0, 1] -> [1, 1, 0, 0], t1 all 6 -> all spike.
    r: 2 * c + (x[y, x+1] + x[y+1, x]): t0 [2, 3, 1, 0] -> [0, 1, 0, 0], t1 all 4 -> all. p: any input."""
    _, rec, _ = conv_hand
    np.testing.assert_array_equal(rec.spikes[0][:, 0], [[1, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(rec.spikes[1][:, 0], [[0, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(rec.spikes[2][:, 0], [[1], [1]])


def test_conv_fanout_by_hand():
    """Outputs reaching each input pixel of a 2x2 kernel on 3x3 (stride 1, no padding): structural
    [[1,2,1],[2,4,2],[1,2,1]]; through K's nonzeros (K[0,1] = 0) [[1,1,0],[2,3,1],[1,2,1]]."""
    c = Conv(np.array(K).reshape(1, 1, 2, 2), (1, 3, 3))
    assert fanout(c, np.ones((1, 1, 2, 2))).reshape(3, 3).tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    assert fanout(c, c.weight != 0).reshape(3, 3).tolist() == [[1, 1, 0], [2, 3, 1], [1, 2, 1]]


@pytest.mark.parametrize("in_shape, wshape, stride, padding, groups", [
    ((2, 7, 9), (4, 1, 3, 2), (2, 3), (1, 0), 2),  # grouped, strides that leave a remainder
    ((3, 8, 8), (6, 3, 3, 3), (1, 1), (1, 1), 1),
    ((4, 5, 5), (4, 1, 2, 2), (3, 3), (1, 1), 4),  # depthwise, stride larger than the kernel (gaps), padded
])
def test_conv_fanout_equals_unrolled_matrix(in_shape, wshape, stride, padding, groups):
    """fanout() (transposed conv) == nonzeros per column of converters.lava_graph.synapse_matrix."""
    from qsnn_lava.converters.lava_graph import synapse_matrix

    w = np.random.default_rng(0).integers(-2, 3, wshape)
    c = Conv(w, in_shape, stride, padding, groups)
    np.testing.assert_array_equal(fanout(c, w != 0), np.diff(synapse_matrix(c).tocsc().indptr))
    ones = Conv(np.ones(wshape, int), in_shape, stride, padding, groups)
    np.testing.assert_array_equal(fanout(c, np.ones(wshape)), np.diff(synapse_matrix(ones).tocsc().indptr))


def test_synapse_kinds():
    assert synapse_kind(Dense([[1, 2]])) == "dense"
    assert synapse_kind(sum_pool((3, 4, 4), 2)) == "pool"
    assert synapse_kind(Conv(np.full((3, 1, 1, 1), 5), (3, 4, 4), groups=3)) == "identity"
    assert synapse_kind(Conv(np.full((3, 1, 2, 2), 1), (3, 4, 4), stride=1, groups=3)) == "conv"  # overlaps
    assert synapse_kind(Conv(np.ones((2, 3, 1, 1), int), (3, 4, 4))) == "conv"  # a learned 1x1 projection


def test_conv_hand_counts(conv_hand):
    _, _, c = conv_hand
    lc, lr, lp = c["layers"]
    assert [lc["kind"], lr["kind"], lp["kind"]] == ["conv", "identity", "pool"]
    # c: 11 input spikes; effective = sum_j count_j * nnz_j = 12 + nnz(0,0) + nnz(1,1) = 12 + 1 + 3
    assert lc["input_spikes"] == 11 and lc["synops_effective"] == 16 and lc["synops_dense"] == 16 + 1 + 4
    # r: identity from c (6 spikes, fan-out 1) + skip K2 (nnz per pixel [[0,1,1],[1,2,1],[1,1,0]], sum 8)
    main, skip = lr["populations"]
    assert (main["source"], main["kind"], skip["source"], skip["kind"]) == ("c", "identity", INPUT, "conv")
    assert main["synops_effective"] == main["synops_dense"] == 6
    assert skip["synops_effective"] == 8 + 0 + 2 and skip["synops_dense"] == 16 + 1 + 4
    assert lr["synops_effective"] == 16 and lr["synops_dense"] == 27
    assert lr["input_spikes"] == 17 and lr["input_rate"] == pytest.approx(17 / ((4 + 9) * 2))
    assert lp["synops_effective"] == lp["synops_dense"] == 5 and lp["spikes"] == 2
    # active: c t0 n0, n1 (events), n3 (x11 through K[0,0], a = 1, no spike), not n2 (only K[0,1] = 0); t1 all
    assert lc["neuron_updates_active"] == 7 and lc["neuron_updates_idle"] == 1
    assert lr["neuron_updates_active"] == 7 and lp["neuron_updates_active"] == 2
    assert (lc["spikes"], lr["spikes"]) == (6, 5)
    # static: stored weights (a kernel once), structural synapse pairs, ANN twin
    assert [lc["weights"], lr["weights"], lp["weights"]] == [4, 1 + 4, 4]
    assert [lc["nonzero_weights"], lr["nonzero_weights"]] == [3, 1 + 2]
    assert [lc["synapses"], lr["synapses"], lp["synapses"]] == [16, 4 + 16, 4]
    assert [lc["ann_macs"], lr["ann_macs"], lp["ann_macs"]] == [4 * 4, 4 * 4, 0]
    assert [lc["ann_adds"], lr["ann_adds"], lp["ann_adds"]] == [0, 4, 1 * (4 - 1)]
    assert [lc["ann_params"], lr["ann_params"], lp["ann_params"]] == [4, 4, 0]
    t = c["total"]
    assert t["dense_ops"] == 40 * 2 and t["memory_weight_bits"] == 4 * 4 + 5 * 4 + 4 * 1
    assert t["memory_state_bits"] == 9 * 48
    assert en.energy(c, en.TABLES["ann_fp32"])["total"]["pJ"] == pytest.approx(32 * 4.6 + 7 * 0.9)
    assert en.energy(c, en.TABLES["ann_int8"])["layers"][2]["pJ"] == pytest.approx(3 * 0.03)
    assert en.energy(c, {"kind": "ann", "mac_pJ": 2.0})["total"]["pJ"] == pytest.approx((32 + 7) * 2.0)
    assert en.energy(c, en.TABLES["cmos45_snn_fp32"])["total"]["pJ"] == pytest.approx(37 * 0.9 + 18 * 11.0)
    assert en.memory_bytes(c, 32, 64) == (13 * 32 + 9 * 64) / 8 and en.memory_bytes(c, 8, ann=True) == 8
    assert en.neurobench_metrics(c)["synaptic_operations"]["Dense"] == 80


def test_metrics_model_size_and_synops_by_hand(conv_hand):
    """metrics.model_size (QP-SNN Eq. 16) by hand, and the numbers count_ops reports come from it.
    c: a learned 2x2 kernel at 4 bits; r: a fixed identity (1 weight) + a learned 2x2 skip at 4 bits;
    p: a fixed 2x2 sum pool at 1 bit."""
    from qsnn_lava.metrics import model_size, synops_per_layer

    net, rec, c = conv_hand
    m = model_size(net)
    assert [row["kind"] for row in m["layers"]] == ["conv", "identity", "pool"]
    assert [row["parameters"] for row in m["layers"]] == [4, 4, 0]
    assert [row["weights"] for row in m["layers"]] == [4, 5, 4]
    assert [row["size_bits"] for row in m["layers"]] == [16, 16, 0]
    assert m["total"]["size_bits"] == 32 and m["total"]["size_kbytes"] == 32 / 8 / 1024
    assert m["total"]["memory_bits"] == 4 * 4 + 5 * 4 + 4 * 1 == c["total"]["memory_weight_bits"]
    assert m["total"]["parameters"] == c["total"]["ann_params"] and m["total"]["weights"] == c["total"]["weights"]
    assert synops_per_layer(net, XC, rec) == [16, 16, 5] == [layer["synops_effective"] for layer in c["layers"]]


def test_dense_counts_are_the_unrolled_conv_counts():
    """A conv layer and the Dense layer of its unrolled matrix give the same workload counts."""
    from qsnn_lava.converters.lava_graph import synapse_matrix
    from netgen import random_spikes

    rng = np.random.default_rng(4)
    w = rng.integers(-3, 4, (3, 2, 3, 3))
    conv = Conv(w, (2, 5, 5), stride=2, padding=1)
    nrn = LIF(conv.n_out, vth=3, du=4095, dv=4095)
    a = Network((2, 5, 5), [Layer("l", conv, nrn)], 3).validate()
    b = Network((50,), [Layer("l", Dense(synapse_matrix(conv).toarray()), nrn)], 3).validate()
    x = random_spikes(rng, a, 5)
    ca, cb = (en.count_ops(n, x, simulate(n, x))["layers"][0] for n in (a, b))
    for k in ("synops_effective", "neuron_updates_active", "spikes", "nonzero_synapses"):
        assert ca[k] == cb[k], k
    # structural fan-out: the conv's receptive-field pairs, the unrolled Dense's every matrix entry
    assert ca["synops_dense"] < cb["synops_dense"] and cb["synapses"] == 27 * 50 and ca["synapses"] < 27 * 18
    assert ca["dense_ops"] == ca["synapses"] * 3 and ca["ann_macs"] == 27 * 2 * 3 * 3


@pytest.mark.lava
@pytest.mark.parametrize("builder, seed", [("random", 5), ("conv_net", 0), ("residual_net", 3)])
def test_counts_from_reference_equal_counts_from_lava(builder, seed):
    """The counts of the same samples from the reference and from real Lava (fixed_pt) are identical:
    a dense net, conv + sum pool + grouped conv + dense, and a residual net (identity and dense skips)."""
    import test_conv
    from qsnn_lava.deployment.backends.lava import run as run_lava
    from netgen import random_network, random_spikes

    rng = np.random.default_rng(seed)
    if builder == "random":
        net = random_network(rng, sizes=(12, 9, 6), timesteps=5)
    else:
        net = getattr(test_conv, builder)(rng)
    x = random_spikes(rng, net, n_samples=6)
    ref = en.count_ops(net, x, simulate(net, x))
    lava = en.count_ops(net, x, run_lava(net, x))
    assert all(layer["spikes"] > 0 for layer in ref["layers"])
    assert any(len(layer["populations"]) > 1 for layer in ref["layers"]) == (builder == "residual_net")
    assert ref == lava


def test_bench_energy_script(tmp_path):
    """bench/energy.py, run as `make bench` runs it (a script of the installed package, no sys.path edits), on
    an (untrained) conv QSNN checkpoint: md, json and png, all rows but the missing pruned one, and its
    per-layer energies sum to the totals."""
    import subprocess
    import sys
    from pathlib import Path

    from qsnn_lava.io import save_checkpoint
    from qsnn_lava.models import build_model, make_config

    script = Path(__file__).resolve().parents[1] / "bench" / "energy.py"
    cfg = make_config(arch="resnet", sizes=[64, 10], input_shape=(1, 8, 8), channels=[4, 6], timesteps=3)
    ckpt = tmp_path / "r.pt"
    save_checkpoint(ckpt, cfg, build_model(cfg).state_dict(), {"dataset": "digits"})
    run = subprocess.run([sys.executable, str(script), "--checkpoint", str(ckpt), "--pruned", str(tmp_path / "none.pt"),
                          "--dataset", "digits", "--samples", "12", "--out", str(tmp_path), "--quiet"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "not found" in out and "headline" in out
    rep = json.loads((tmp_path / "energy.json").read_text())
    keys = [(r["model"], r["key"]) for r in rep["targets"]]
    assert keys == [("arith", k) for k in ("float_snn", "qsnn", "ann_fp32", "ann_int8", "qsnn_loihi1")] + \
        [("mem", k) for k in ("float_snn", "qsnn", "ann_fp32", "ann_int8")]  # before and after the review
    for r in rep["targets"]:
        assert sum(r["layers"].values()) * 1e-6 == pytest.approx(r["uJ"])
    by = {(r["model"], r["key"]): r for r in rep["targets"]}
    t = rep["qsnn"]["counts"]["total"]
    assert by["arith", "ann_fp32"]["uJ"] == pytest.approx((t["ann_macs"] * 4.6 + t["ann_adds"] * 0.9) * 1e-6)
    assert t["ann_adds"] > 0  # the residual additions
    assert rep["ratios"]["arith"]["ann_fp32_over_qsnn"] == pytest.approx(
        by["arith", "ann_fp32"]["uJ"] / by["arith", "qsnn"]["uJ"])
    assert by["mem", "ann_int8"]["table"] == "ann_int8_mem" and by["mem", "qsnn"]["table"] == "cmos45_snn_mem"
    assert "| float SNN (fp32) |" in (tmp_path / "energy.md").read_text()
    assert (tmp_path / "energy.png").read_bytes()[:4] == b"\x89PNG"


def test_reviewed_tables_interpolate_horowitz():
    """The reviewed tables' per-op energies pass through Horowitz's published 8- and 32-bit entries."""
    assert en.int_add_pJ(8) == pytest.approx(0.03) and en.int_add_pJ(32) == pytest.approx(0.1)
    assert en.int_mult_pJ(8, 8) == pytest.approx(0.2) and en.int_mult_pJ(32, 32) == pytest.approx(3.1)
    assert 0.03 < en.TABLES["cmos45_snn_mem"]["synop_pJ"] == en.int_add_pJ(24) < 0.1
    assert en.TABLES["cmos45_snn_mem"]["neuron_update_active_pJ"] == pytest.approx(
        2 * en.int_mult_pJ(24, 12) + 4 * en.int_add_pJ(24))
    assert en.TABLES["ann_int8_mem"]["mac_pJ"] == pytest.approx(0.2 + 0.1)  # int8 mult into an int32 accumulator
    assert en.SRAM_BIT_PJ == 10 / 64


def test_memory_traffic_for_both_kinds(hand):
    """l0: 2 neurons, 3 inputs; l1: 1 neuron, 2 inputs; T = 3, 4-bit weights, SynOps 5.5 + 3."""
    _, _, c = hand
    assert [layer["spike_map_bits"] for layer in c["layers"]] == [2 * 3 + 3 * 3, 1 * 3 + 2 * 3]
    assert [layer["ann_activations"] for layer in c["layers"]] == [2 + 3, 1 + 2]
    t = en.TABLES["cmos45_snn_mem"]
    e = en.energy(c, t)["total"]
    bits = 8.5 * 4 + 9 * 2 * 48 + (15 + 9)  # weights read per synop, u and v read + written, spike maps
    assert e["parts_pJ"]["sram_weight_read"] == pytest.approx(8.5 * 4 * en.SRAM_BIT_PJ)
    assert e["pJ"] == pytest.approx(8.5 * t["synop_pJ"] + 9 * t["neuron_update_active_pJ"] + bits * en.SRAM_BIT_PJ)
    a = en.energy(c, en.TABLES["ann_int8_mem"])["total"]
    assert a["pJ"] == pytest.approx(8 * 0.3 + (8 * 8 + 8 * 8) * en.SRAM_BIT_PJ)  # MACs, weights, activations
    assert a["parts_pJ"]["sram_state_rw"] == 0
    f = en.energy(c, en.TABLES["cmos45_snn_fp32_mem"])["total"]["parts_pJ"]
    assert f["sram_weight_read"] == pytest.approx(8.5 * 32 * en.SRAM_BIT_PJ)
    assert f["sram_state_rw"] == pytest.approx(9 * 2 * 64 * en.SRAM_BIT_PJ)
    assert "sram_weight_read" not in en.energy(c, en.TABLES["cmos45_snn"])["total"]["parts_pJ"]  # arithmetic only


def test_verdict_lines(hand):
    _, _, c = hand
    res = [en.energy(c, en.TABLES[k]) for k in ("cmos45_snn", "ann_int8", "cmos45_snn_mem", "ann_int8_mem")]
    lines = en.verdicts(res, 0.918, {"ann_int8_mem": 0.923})
    ratio = res[2]["total"]["pJ"] / res[3]["total"]["pJ"]
    assert lines == [f"cmos45_snn_mem vs ann_int8_mem: QSNN uses {ratio:.2g}x the energy of the int8 ANN twin "
                     "at 91.8 % vs 92.3 %"]
    assert len(en.verdicts(res, 0.918, 0.923)) == 2 and en.verdicts(res, None, 0.9) == []


def test_api_and_cli_verdicts(hand):
    import qsnn_lava as ql
    from qsnn_lava.cli import _ann_accuracy

    net, _, _ = hand
    rep = ql.energy(net, spikes=X, tables=("cmos45_snn_mem", "ann_int8_mem"), accuracy=0.5, ann_accuracy=0.75)
    assert rep.verdicts[0].endswith("at 50.0 % vs 75.0 %") and rep.to_dict()["verdicts"] == rep.verdicts
    with pytest.raises(QsnnError, match="ann_accuracy = 92.3 must be a fraction"):
        ql.energy(net, spikes=X, ann_accuracy=92.3)
    assert _ann_accuracy(["92.3"]) == pytest.approx(0.923)
    assert _ann_accuracy(["ann_int8=90", "ann_fp32=91"]) == {"ann_int8": 0.9, "ann_fp32": 0.91}
    with pytest.raises(QsnnError, match="not a percentage"):
        _ann_accuracy(["ninety"])


def test_bench_energy_frontier_script(tmp_path):
    """bench/energy_frontier.py end to end on digits at the smallest scale (T = 1, one epoch, no Lava): a
    budget variant pulls in its base, every QSNN point deploys with 0 torch-vs-reference mismatches, the
    ANN points are priced on the base's ANN-twin counts, and md, json and png are written."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "energy_frontier.py"
    run = subprocess.run([sys.executable, str(script), "--dataset", "digits", "--variants", "T1-budget",
                          "--epochs", "1", "--ann-epochs", "1", "--lava-samples", "0", "--test-samples", "60",
                          "--train-samples", "500",
                          "--out", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rep = json.loads((tmp_path / "energy_frontier.json").read_text())
    names = [p["name"] for p in rep["points"]]
    assert names == ["T1", "T1-budget", "float ANN", "int8 ANN"]
    by = {p["name"]: p for p in rep["points"]}
    assert by["T1-budget"]["synops_budget"] == pytest.approx(0.6 * by["T1"]["synops"])
    assert all(by[n]["torch_vs_reference_mismatches"] == 0 and by[n]["test_samples"] == 60 for n in ("T1", "T1-budget"))
    assert by["int8 ANN"]["uJ"] < by["float ANN"]["uJ"] and rep["pareto"] and "met" in rep["acceptance"]
    assert "Pareto front" in (tmp_path / "energy_frontier.md").read_text()
    assert (tmp_path / "energy_frontier.png").read_bytes()[:4] == b"\x89PNG"
