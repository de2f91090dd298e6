"""The command line as a user meets it: end to end, and every bad input -> one line, exit 2, no file."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from qsnn_lava.io import save_checkpoint
from qsnn_lava.models import build_model, make_config
from clicheck import one_error_line


def cli(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    code, out, err = cli("train", "--dataset", "digits", "--epochs", 3, "--hidden", 32, "--out", d / "m.pt", "-q")
    assert code == 0, err
    code, out, err = cli("convert", d / "m.pt", "-o", d / "m.h5")
    assert code == 0, err
    return d


def test_verify_all_backends_equivalent(trained):
    code, out, err = cli("verify", trained / "m.pt", "--dataset", "digits", "--samples", 30,
                         "--backends", "torch,reference,lava", "--out", trained / "v", "-q")
    assert code == 0, out + err
    rep = json.loads((trained / "v" / "report.json").read_text())
    assert (trained / "v" / "report.html").stat().st_size > 1000
    assert rep["spike_mismatches"] == {"trained_vs_reference": 0, "reference_vs_lava": 0}
    assert rep["samples"] == 30
    assert rep["accuracy"]["trained"] == rep["accuracy"]["reference"] == rep["accuracy"]["lava"]


def test_simulate_ir_with_input_file(trained):
    x = (np.random.default_rng(0).random((3, 8, 64)) < 0.3).astype(np.uint8)
    np.save(trained / "in.npy", x)
    outs = []
    for backend in ("reference", "lava"):
        code, out, err = cli("simulate", trained / "m.h5", "--backend", backend, "--input", trained / "in.npy",
                             "--output", trained / f"{backend}.npy", "-q", "--workers", 2)
        assert code == 0, err
        outs.append(np.load(trained / f"{backend}.npy"))
    assert outs[0].shape == (3, 8, 10) and np.array_equal(outs[0], outs[1])
    code, out, err = cli("simulate", trained / "m.h5", "--input", trained / "in.npy", "--workers", 0)
    assert code == 2 and "workers = 0" in err and "Traceback" not in err


def test_verify_ir_cannot_use_torch(trained):
    code, out, err = cli("verify", trained / "m.h5", "--backends", "torch,reference", "--samples", 5)
    assert code == 2 and "needs the checkpoint" in err


def test_missing_checkpoint(tmp_path):
    code, _, err = cli("convert", tmp_path / "nope.pt", "-o", tmp_path / "x.h5")
    one_error_line(code, err, "not found")
    assert not (tmp_path / "x.h5").exists()


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage" * 50)
    code, _, err = cli("convert", tmp_path / "bad.pt", "-o", tmp_path / "x.h5")
    one_error_line(code, err, "bad.pt")
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.pt"]


def test_checkpoint_whose_weights_do_not_fit(tmp_path):
    cfg = make_config(sizes=[64, 8, 10], bits=8)
    model = build_model(cfg)
    with torch.no_grad():
        model.layers[0].synapse.weight[0, :2] = torch.tensor([1.0, -1.0])
    save_checkpoint(tmp_path / "w8.pt", cfg, model.state_dict())
    code, _, err = cli("convert", tmp_path / "w8.pt", "-o", tmp_path / "x.h5")
    one_error_line(code, err, "fc1", "weight", "Loihi 2 range")
    assert not (tmp_path / "x.h5").exists()


def test_checkpoint_with_mismatched_weights(tmp_path):
    cfg = make_config(sizes=[64, 8, 10])
    sd = build_model(cfg).state_dict()
    sd["layers.0.synapse.weight"] = torch.zeros(3, 3)
    save_checkpoint(tmp_path / "m.pt", cfg, sd)
    code, _, err = cli("convert", tmp_path / "m.pt", "-o", tmp_path / "x.h5")
    one_error_line(code, err, "do not match")


def test_non_hdf5_and_wrong_version_ir(tmp_path, trained):
    (tmp_path / "t.h5").write_text("hello")
    code, _, err = cli("simulate", tmp_path / "t.h5", "--samples", 3)
    one_error_line(code, err, "not an HDF5 file")
    import shutil
    shutil.copy(trained / "m.h5", tmp_path / "v.h5")
    with h5py.File(tmp_path / "v.h5", "a") as f:
        f.attrs["version"] = 7
    code, _, err = cli("simulate", tmp_path / "v.h5", "--samples", 3, "--output", tmp_path / "o.npy")
    one_error_line(code, err, "version 7")
    assert not (tmp_path / "o.npy").exists()


def test_wrong_input_shape(tmp_path, trained):
    np.save(tmp_path / "in.npy", np.zeros((2, 8, 63), np.uint8))
    code, _, err = cli("simulate", trained / "m.h5", "--input", tmp_path / "in.npy", "--output", tmp_path / "o.npy")
    one_error_line(code, err, "shape")
    assert not (tmp_path / "o.npy").exists()


def test_verify_against_checkpoint_finds_a_modified_ir(trained, tmp_path):
    import shutil
    shutil.copy(trained / "m.h5", tmp_path / "mod.h5")
    with h5py.File(tmp_path / "mod.h5", "a") as f:
        w = f["layers/0/synapse/weight"]
        col = w[()]
        col[5] = np.clip(col[5] + 6, -15, 15)  # neuron 5 of fc1 gets more input
        w[...] = col
    code, out, err = cli("verify", tmp_path / "mod.h5", "--against", trained / "m.pt", "--samples", 20,
                         "--backends", "torch,reference,lava", "--out", tmp_path / "v", "-q")
    assert code == 1, out + err
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    c = rep["comparisons"]["trained_vs_reference"]
    assert c["first_divergence"]["layer"] == "fc1" and c["first_divergence"]["neuron"] == 5
    assert c["diagnosis"]["likely_cause"] == "synaptic input (weights)"
    assert rep["spike_mismatches"]["reference_vs_lava"] == 0  # the IR itself still runs exactly
    assert "likely cause" in out


def test_train_resumes_an_interrupted_run_exactly(tmp_path):
    """A 2-epoch run interrupted after epoch 1 (Ctrl-C) and resumed from its checkpoint equals an
    uninterrupted 2-epoch run, weights and history."""
    from qsnn_lava.data import load_dataset
    from qsnn_lava.io import load_checkpoint
    from qsnn_lava.training import train

    data = load_dataset("digits")
    cfg = make_config(sizes=[64, 16, 10], timesteps=2)
    full, hist = train(cfg, data, epochs=2, progress=False)

    def interrupt(model, state):
        save_checkpoint(tmp_path / "part.pt", cfg, model.state_dict(), {}, training=state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, epochs=2, progress=False, on_epoch=interrupt)
    resumed, hist2 = train(cfg, data, epochs=2, progress=False, resume=load_checkpoint(tmp_path / "part.pt"))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert hist["test_acc"] == hist2["test_acc"] and hist2["epoch"] == [1, 2]
    code, _, err = cli("train", "--resume", tmp_path / "part.pt", "--epochs", 2, "--out", tmp_path / "part.pt", "-q")
    assert code == 0, err
    done = load_checkpoint(tmp_path / "part.pt")
    assert done["meta"]["test_accuracy"] == hist["test_acc"][-1]


def test_train_qmem_and_conv_archs_from_the_cli(tmp_path):
    ck, ir = tmp_path / "q.pt", tmp_path / "q.h5"
    code, _, err = cli("train", "--neuron", "qmem", "--mem-bits", "2", "--hidden", "16", "--epochs", "1",
                       "--timesteps", "2", "--quiet", "--out", ck)
    assert code == 0, err
    code, out, _ = cli("convert", ck, "-o", ir)
    assert code == 0 and "CPU only" in out
    code, _, err = cli("deploy", ir, "--target", "loihi2", "--out", tmp_path / "b")
    assert code == 2 and "neuron type" in err and not (tmp_path / "b").exists()
    code, _, err = cli("train", "--neuron", "qmem", "--mem-bits", "9", "--epochs", "1", "--out", tmp_path / "x.pt")
    assert code == 2 and "mem_bits" in err
    code, _, err = cli("train", "--arch", "vgg", "--channels", 2, 4, "--epochs", 1, "--timesteps", 2, "--quiet",
                       "--out", tmp_path / "v.pt")
    assert code == 0, err
    code, _, err = cli("train", "--quant", "rescaw", "--bits", "1", "--epochs", "1", "--out", tmp_path / "x.pt")
    assert code == 2 and "ReScaW" in err
