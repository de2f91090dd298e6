"""Design-rule check, deployment bundles (run on real Lava), the missing-lava-loihi path, energy CLI."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from qsnn_lava.deployment.drc import design_rule_check
from netgen import random_network
from qsnn_lava.ir import LIF, Dense, Layer, Network


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


def net64(**lif):
    kw = dict(n=10, vth=20, du=4095, dv=2048)
    kw.update(lif)
    w = np.random.default_rng(0).integers(-7, 8, (10, 64))
    return Network((64,), [Layer("fc1", Dense(w), LIF(**kw))], 8)


@pytest.mark.parametrize("field,kw", [("vth", {"vth": 1 << 17}), ("du", {"du": 5000}), ("dv", {"dv": -1}),
                                      ("bias_mant", {"bias_mant": 4096}), ("bias_exp", {"bias_exp": 9})])
def test_drc_names_each_neuron_limit(field, kw):
    drc = design_rule_check(net64(**kw))
    assert not drc["passed"] and [v["field"] for v in drc["violations"]] == [field]
    assert drc["violations"][0]["where"] == "layer 0 (fc1)"


def test_drc_lists_every_violation_with_limits():
    net = Network((4,), [Layer("a", Dense(np.array([[129, -3, 0, 1], [1, 1, 1, 1]]), weight_exp=9),
                               LIF(2, vth=1 << 18, du=1, dv=1))], 2)
    vs = design_rule_check(net)["violations"]
    fields = {v["field"] for v in vs}
    assert {"weight", "weight_exp", "vth"} <= fields
    w = next(v for v in vs if v["field"] == "weight")
    assert (w["value"], w["lo"], w["hi"]) == (129, -128, 127)


def test_drc_passes_legal_network(rng):
    assert design_rule_check(random_network(rng))["passed"]


@pytest.fixture(scope="module")
def ir_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("dep")
    net64(bias_mant=np.arange(10) * 3, bias_exp=6).save(d / "m.h5")
    return d / "m.h5"


def test_deploy_cpu_bundle_runs_and_reverifies(ir_file, tmp_path):
    code, out, err = cli("deploy", ir_file, "--target", "cpu", "--out", tmp_path / "b", "--samples", 6)
    assert code == 0, out + err
    b = tmp_path / "b"
    m = json.loads((b / "manifest.json").read_text())
    assert m["format"] == "qsnn-lava-bundle" and m["design_rules"]["passed"] and m["netx"]["file"] == "model.net"
    assert set(m["files"]) == {"model.ir.h5", "model.net", "sample_input.npy", "expected_output.npy", "run.py"}
    assert m["packages"]["lava-nc"] == "0.10.0" and m["resources"]["totals"]["cores"] >= 1
    assert m["interpreter"] == sys.executable  # run.py names it when another Python lacks qsnn-lava
    assert "0 output spike mismatches" in out
    # the bundle's own script, on CPU (no lava-loihi here): IR and netx file both equal the reference
    p = subprocess.run([sys.executable, b / "run.py", "--cpu"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.count(" 0 output spike mismatches") == 2, p.stdout + p.stderr
    code, out, _ = cli("verify", b, "--samples", 10, "-q")
    assert code == 0 and "matches its manifest hash" in out
    with h5py.File(b / "model.ir.h5", "a") as f:
        f["layers/0/neuron"].attrs["vth"] = 21
    code, out, _ = cli("verify", b, "--samples", 10, "-q")
    assert code == 1 and "model.ir.h5" in out


def test_deploy_loihi2_without_lava_loihi(ir_file, tmp_path):
    code, out, err = cli("deploy", ir_file, "--target", "loihi2", "--out", tmp_path / "b")
    assert code == 3
    assert "lava-loihi" in err and "INRC" in err and str(tmp_path / "b") in err and "Traceback" not in err
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_deploy_refuses_violating_ir_and_writes_nothing(ir_file, tmp_path):
    import shutil
    shutil.copy(ir_file, tmp_path / "bad.h5")
    with h5py.File(tmp_path / "bad.h5", "a") as f:
        f["layers/0/neuron"].attrs["vth"] = 1 << 17
        f["layers/0/neuron"].attrs["dv"] = 5000
    code, out, err = cli("deploy", tmp_path / "bad.h5", "--out", tmp_path / "b")
    assert code == 2 and "2 Loihi 2 design rule" in err and "vth = 131072" in err and "dv = 5000" in err
    assert "Traceback" not in err and not (tmp_path / "b").exists()


def test_energy_cli_with_custom_table(ir_file, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"name": "mine", "kind": "snn", "synop_pJ": 1.0,
                                                 "neuron_update_active_pJ": 0, "neuron_update_idle_pJ": 0,
                                                 "spike_pJ": 0}))
    code, out, err = cli("energy", ir_file, "--samples", 20, "--tables", "loihi1", "--cost-table",
                         tmp_path / "t.json", "--out", tmp_path / "e", "-q")
    assert code == 0, err
    rep = json.loads((tmp_path / "e" / "energy.json").read_text())
    mine = next(r for r in rep["energy"] if r["table"] == "mine")
    assert mine["total"]["pJ"] == pytest.approx(rep["counts"]["total"]["synops_effective"])
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "kind": "snn", "synop_pJ": -1}))
    code, _, err = cli("energy", ir_file, "--samples", 5, "--cost-table", tmp_path / "bad.json")
    assert code == 2 and "bad.json" in err


def test_estimate_shows_what_pruning_buys():
    """Removing neurons (structured pruning) or zeroing synapses lowers the estimated cores."""
    from qsnn_lava.deployment.resources import estimate, shapes_from_ir

    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, (100, 2560))
    w[w == 0] = 1

    def cores(weight):
        net = Network((2560,), [Layer("fc", Dense(weight), LIF(weight.shape[0], vth=50, du=4095, dv=2048))], 4)
        return estimate(shapes_from_ir(net))["totals"]["cores"]

    full, half_neurons = cores(w), cores(w[:50])
    sparse = w.copy()
    sparse[:, rng.random(2560) < 0.7] = 0  # 70 % of input channels pruned away
    assert half_neurons < full and cores(sparse) < full
