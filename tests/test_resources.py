"""Loihi 2 resource estimate (deploy.resources): hand-worked layers, JSON overrides, PilotNet calibration.

Hand formulas (defaults: 64-bit SynMem units, 12000 per core, 3168 neurons per core, a dense synapse
costs weight_bits + 7 bits, each input axon 32 bits more):
    dense units(n) = fan_in * ceil((ceil(n * density) * (bits + 7) + 32) / 64)
"""
import json

import numpy as np
import pytest

from qsnn_lava.deployment import resources as rs
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Dense, Layer, Network


def dense(name, n, fan_in, bits=8, nnz=None):
    return rs.LayerShape(name, "dense", n, fan_in, n * fan_in if nnz is None else nnz, bits)


def one(shape, chip=None):
    return rs.estimate([shape], chip)["layers"][0]


# --- shapes -------------------------------------------------------------------------------------------

def test_conv_shape_matches_netx_printout_of_pilotnet():
    """netx prints W x H x C: 99x32x24, 49x15x36, 24x7x48, 22x4x64, 20x2x64 (run.ipynb)."""
    shapes = rs.pilotnet_lif_shapes()
    outs = [s.kernel_params["out_chw"] for s in shapes if s.kind == "conv"]
    assert outs == [(24, 32, 99), (36, 15, 49), (48, 7, 24), (64, 4, 22), (64, 2, 20)]
    c1 = shapes[1]
    assert (c1.n_neurons, c1.fan_in, c1.n_synapses) == (24 * 32 * 99, 3 * 3 * 3, 24 * 27)
    fc1 = shapes[6]
    assert (fc1.kind, fc1.fan_in, fc1.n_neurons) == ("dense", 2560, 100)  # the "2560-input dense layer"
    assert [s.n_neurons for s in shapes[6:]] == [100, 50, 10, 1]


def test_conv_shape_rules():
    s = rs.conv_shape("c", (2, 7, 9), 5, kernel=(3, 1), stride=(2, 3), padding=(1, 0), weight_bits=4)
    # H: (7 + 2 - 3) // 2 + 1 = 4; W: (9 - 1) // 3 + 1 = 3
    assert s.kernel_params["out_chw"] == (5, 4, 3)
    assert (s.n_neurons, s.fan_in, s.n_synapses, s.weight_bits) == (60, 2 * 3 * 1, 5 * 6, 4)
    with pytest.raises(QsnnError, match="does not fit"):
        rs.conv_shape("c", (1, 2, 2), 1, kernel=3)
    with pytest.raises(QsnnError, match="kernel"):
        rs.conv_shape("c", (1, 8, 8), 1, kernel=(3, 3, 3))


def test_layer_shape_validation():
    with pytest.raises(QsnnError, match="kind 'pool'"):
        rs.LayerShape("p", "pool", 4, 4, 4, 8)
    with pytest.raises(QsnnError, match="exceed"):
        dense("d", 2, 3, nnz=7)
    with pytest.raises(QsnnError, match="out_chw"):
        rs.LayerShape("i", "input", 10, 0, 0, 0, {"out_chw": (1, 2, 3)})
    with pytest.raises(QsnnError, match="conv_shape"):
        rs.LayerShape("c", "conv", 10, 9, 9, 8)


def test_shapes_from_ir_counts_nonzero_weights():
    w = np.zeros((100, 2560), np.int64)
    w[:, ::2] = 3  # half the weights pruned
    net = Network((2560,), [Layer("fc", Dense(w), LIF(100, vth=10, du=4095, dv=4095), weight_bits=8)], 4)
    sparse, = rs.shapes_from_ir(net)
    full, = rs.shapes_from_ir(net, sparse=False)
    assert (sparse.n_synapses, full.n_synapses, sparse.fan_in, sparse.n_neurons) == (128000, 256000, 2560, 100)
    # density 1/2: ceil(n / 2) * 15 + 32 <= 4 words * 64 bits  ->  n <= 28; dense: 15 n + 32 <= 256 -> 14
    assert one(sparse)["capacity"] == 28 and one(full)["capacity"] == 14


def test_shapes_from_ir_conv_pool_and_skips():
    """Conv layers become conv shapes (fan-in C_in/groups * kh * kw, kernel weights); skips add theirs."""
    from qsnn_lava.ir import INPUT, Conv, Skip, sum_pool

    c1 = Conv(np.ones((4, 2, 3, 3), int), (2, 8, 8), padding=1)
    pool = sum_pool(c1.out_shape, 2)
    ident = Conv(np.full((4, 1, 1, 1), 5), pool.out_shape, groups=4)
    c2 = Conv(np.ones((4, 4, 3, 3), int), pool.out_shape, padding=1)
    fc = np.zeros((3, 64), int)
    fc[:, :10] = 1
    lif = lambda n: LIF(n, vth=10, du=4095, dv=4095)  # noqa: E731
    net = Network((2, 8, 8), [Layer("c1", c1, lif(256), weight_bits=4), Layer("pool", pool, lif(64), weight_bits=1),
                              Layer("c2", c2, lif(64), weight_bits=4, skips=[Skip("pool", ident)]),
                              Layer("fc", Dense(fc), lif(3), skips=[Skip(INPUT, Dense(np.ones((3, 128), int)))])],
                  2).validate()
    s = rs.shapes_from_ir(net)
    assert [x.kind for x in s] == ["conv", "conv", "conv", "dense"]
    assert (s[0].n_neurons, s[0].fan_in, s[0].n_synapses) == (256, 18, 72)
    assert s[0].kernel_params["out_chw"] == (4, 8, 8) and s[0].kernel_params["kernel"] == (3, 3)
    assert (s[1].n_neurons, s[1].fan_in, s[1].n_synapses, s[1].weight_bits) == (64, 4, 16, 1)
    assert (s[2].fan_in, s[2].n_synapses) == (36 + 1, 144 + 4)
    assert (s[3].fan_in, s[3].n_synapses) == (64 + 128, 30 + 384)
    assert rs.shapes_from_ir(net, sparse=False)[3].n_synapses == 192 + 384
    assert rs.estimate(s)["totals"]["fits"]


# --- known answers --------------------------------------------------------------------------------------

def test_dense_layer_bound_by_synaptic_memory():
    """fan-in 2560: 12000 // 2560 = 4 words per axon -> 15 n + 32 <= 256 -> n <= 14 (15 needs 5 words)."""
    chip = rs.ChipModel()
    layer = dense("fc", 100, 2560)
    assert rs.dense_synmem(layer, 14, chip) == 2560 * 4 == 10240
    assert rs.dense_synmem(layer, 15, chip) == 2560 * 5 == 12800
    r = one(layer)
    assert (r["binding"], r["capacity"], r["cores_packed"]) == ("synaptic memory", 14, 8)
    # compiler-like split: 1 part (61440 units, ratio 5.12) -> 6 parts of 17 (12800, ratio 1.07) -> 12 parts
    # of 9: ceil(100 / 9) = 12 cores, the last one holding 1 neuron
    assert rs.dense_synmem(layer, 100, chip) == 61440
    assert (r["cores"], r["neurons_per_core"], r["synmem_per_core"]) == (12, 9, 2560 * 3)


def test_dense_layer_bound_by_neurons():
    """fan-in 4: memory never binds below 3168 neurons (4 * ceil((3168 * 15 + 32) / 64) = 2972 units)."""
    r = one(dense("wide", 10000, 4))
    assert (r["binding"], r["capacity"]) == ("neurons", 3168)
    # split: ratio 10000 / 3168 = 3.16 -> 4 parts of 2500 neurons; packed ceil(10000 / 3168) = 4
    assert (r["cores"], r["neurons_per_core"], r["cores_packed"]) == (4, 2500, 4)
    assert r["synmem_per_core"] == 4 * ((2500 * 15 + 32 + 63) // 64)


def test_weight_bits_change_synapse_cost():
    """4-bit weights: 11 bits per synapse -> 11 n + 32 <= 256 -> n <= 20 at fan-in 2560."""
    assert one(dense("fc", 100, 2560, bits=4))["capacity"] == 20


def test_conv_slices_are_power_of_two_columns():
    # 64 channels x 4 rows = 256 neurons per column; 8 columns = 2048 <= 3168, 16 = 4096 > 3168
    s = rs.conv_shape("c", (48, 7, 24), 64, 3, stride=(2, 1), padding=(1, 0))
    r = one(s)
    assert (r["binding"], r["neurons_per_core"], r["cores"]) == ("neurons", 8 * 4 * 64, 3)  # 22 columns / 8
    assert r["synmem_per_core"] == 3 * 3 * 48 * 8  # kernel rows x ceil(64 channels * 8 bits / 64)


def test_conv_bound_by_synaptic_memory_splits_channels():
    """256 -> 256 channels, 3x3: 2304 rows x 32 words = 73728 units; halve channels until 2304 x 4 fits."""
    s = rs.conv_shape("big", (256, 8, 8), 256, 3, padding=1)
    r = one(s)
    assert r["binding"] == "synaptic memory"
    assert r["synmem_per_core"] == 2304 * 4  # 32 channels per core
    assert r["cores"] == 8 * 1  # 8 channel groups x one 8x8x32 = 2048-neuron slice each


def test_unmappable_layers():
    r = rs.estimate([dense("ok", 10, 10), dense("huge", 1, 13000)])
    huge = r["layers"][1]
    assert not huge["fits"] and huge["binding"] == "synaptic memory" and huge["cores"] is None
    assert r["totals"]["fits"] is False and r["totals"]["cores"] is None and r["totals"]["unmappable"] == ["huge"]
    chip = rs.ChipModel(max_fan_in=1000)
    fc = one(dense("fc", 100, 2560), chip)
    assert (fc["fits"], fc["binding"]) == (False, "fan-in") and "1000" in fc["reason"]
    assert "does not fit" in rs.format_table(rs.estimate([dense("fc", 100, 2560)], chip))


def test_totals_across_chips(tmp_path):
    p = tmp_path / "small.json"
    p.write_text(json.dumps({"name": "tiny", "cores_per_chip": 10, "max_neurons_per_core": 100}))
    chip = rs.ChipModel.from_json(p)
    r = rs.estimate([dense("a", 1000, 1), dense("b", 500, 1), dense("c", 1, 1)], chip)
    assert [x["cores"] for x in r["layers"]] == [10, 5, 1]
    t = r["totals"]
    assert (t["cores"], t["chips"], t["cores_packed"], t["chips_packed"]) == (16, 2, 16, 2)
    assert (t["neurons"], t["synapses"]) == (1501, 1501)
    big = rs.estimate([dense("x", 3168 * 130, 1)])["totals"]  # default: 120 usable cores per chip
    assert (big["cores"], big["chips"]) == (130, 2)
    table = rs.format_table(r)
    assert "| a | dense |" in table and "16 cores (2 chip(s) of 10 cores)" in table and "tiny" in table


# --- chip model JSON ------------------------------------------------------------------------------------

def test_chip_json_override(tmp_path):
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"synmem_units_per_core": 24000, "max_fan_in": None, "name": "double-mem"}))
    chip = rs.ChipModel.from_json(p)
    assert (chip.synmem_units_per_core, chip.max_neurons_per_core, chip.name) == (24000, 3168, "double-mem")
    # 24000 // 2560 = 9 words per axon -> 15 n + 32 <= 576 -> n <= 36
    assert one(dense("fc", 100, 2560), chip)["capacity"] == 36
    assert rs.estimate([dense("fc", 1, 1)], chip)["chip"]["synmem_units_per_core"] == 24000


@pytest.mark.parametrize("content, match", [
    ('{"synmem_units": 12000}', "unknown key 'synmem_units'"),
    ('{"max_neurons_per_core": -1}', "'max_neurons_per_core' = -1 is negative"),
    ('{"dense_extra_bits": -3}', "'dense_extra_bits' = -3 is negative"),
    ('{"synmem_units_per_core": 0}', "'synmem_units_per_core' = 0"),
    ('{"cores_per_chip": "120"}', "'cores_per_chip'.*integer"),
    ('{"cores_per_chip": 1.5}', "'cores_per_chip'.*integer"),
    ('{"max_fan_in": true}', "'max_fan_in'.*integer"),
    ('{"name": 3}', "'name'.*string"),
    ('[1, 2]', "JSON object"),
    ('{"cores_per_chip": 12', "not valid JSON"),
])
def test_chip_json_rejected(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(QsnnError, match=match) as e:
        rs.ChipModel.from_json(p)
    assert "bad.json" in str(e.value)


def test_chip_json_missing_file(tmp_path):
    with pytest.raises(QsnnError, match="not found"):
        rs.ChipModel.from_json(tmp_path / "none.json")


def test_chip_model_direct_construction_checked():
    with pytest.raises(QsnnError, match="'synmem_word_bits' = -64 is negative"):
        rs.ChipModel(synmem_word_bits=-64)


# --- PilotNet calibration (tolerance: exact, 0 cores; this is an in-sample fit, see docs/resources.md) ---

def test_pilotnet_lif_reproduces_the_compiler_log():
    r = rs.estimate(rs.pilotnet_lif_shapes())
    assert {x["name"]: x["cores"] for x in r["layers"]} == rs.PILOTNET_LIF_LOG_CORES
    assert r["totals"]["cores"] == rs.PILOTNET_LIF_LOG_TOTAL == 74
    assert r["totals"]["chips"] == 1
    by = {x["name"]: x for x in r["layers"]}
    # published per-core facts: input slices of 3168 neurons; the 2560-input layer ~8 neurons per core
    assert by["input"]["neurons_per_core"] == 3168
    assert int(by["fc1"]["neurons"] / by["fc1"]["cores"]) == 8  # the log prints the mean, 100 / 12
    assert [by[k]["neurons_per_core"] for k in ("conv1", "conv2", "conv3", "conv4", "conv5")] == \
        [4 * 32 * 24, 4 * 15 * 36, 8 * 7 * 48, 8 * 4 * 64, 16 * 2 * 64]  # Conv(4,32,24) ... Conv(16,2,64)
    # SynMem units printed in the log ("Synapses" column, and the Violation lines for fc1)
    assert int(by["fc1"]["synmem_mean"]) == 7253
    assert [by[k]["synmem_per_core"] for k in ("fc2", "fc3", "fc4")] == [1300, 150, 10]
    fc1, chip = rs.pilotnet_lif_shapes()[6], rs.ChipModel()
    assert (rs.dense_synmem(fc1, 100, chip), rs.dense_synmem(fc1, 17, chip)) == (61440, 12800)
    assert r["totals"]["cores_packed"] == 63  # what tighter packing under the same limits would need


@pytest.mark.parametrize("nmax", [3168, 4095])
def test_pilotnet_neuron_limit_bracket(nmax):
    """The log only brackets the neuron limit: anything in [3168, 4095] reproduces it, 4096 does not."""
    assert rs.estimate(rs.pilotnet_lif_shapes(), rs.ChipModel(max_neurons_per_core=nmax))["totals"]["cores"] == 74
    assert rs.estimate(rs.pilotnet_lif_shapes(), rs.ChipModel(max_neurons_per_core=4096))["totals"]["cores"] == 73


def test_pilotnet_sdnn_consistency():
    """pilotnet_sdnn/benchmark.ipynb: same layers without the input layer, 61 cores; its fc1 needed 66560
    units unsplit, i.e. 16 bits per synapse, which our model gives for 9-bit weights."""
    shapes = rs.pilotnet_lif_shapes(weight_bits=9)[1:]
    assert rs.estimate(shapes)["totals"]["cores"] == 61
    assert rs.dense_synmem(shapes[5], 100, rs.ChipModel()) == 66560
