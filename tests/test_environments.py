"""The core and Lava's environment: files written in either load in the other, and the core works (and
says how to add Lava) where no Lava environment exists."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import qsnn_lava as ql
from qsnn_lava.deployment.backends.lava import lava_python


def in_lava_env(code: str, *args) -> str:
    """Run Python ``code`` in the Lava environment's interpreter; its stdout."""
    python = lava_python()
    p = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.mark.lava
def test_checkpoints_and_ir_files_cross_between_environments(tmp_path):
    model = ql.train(epochs=1, hidden=[16], timesteps=4)
    ql.save(model, tmp_path / "core.pt")
    ql.save(ql.convert(model), tmp_path / "core.ir.h5")
    # the Lava environment reads both, converts the checkpoint itself, and writes its own files back
    out = in_lava_env(
        "import sys, json, numpy, torch, qsnn_lava as ql\n"
        "d = sys.argv[1]\n"
        "m = ql.load(d + '/core.pt')\n"
        "ql.save(ql.convert(m), d + '/lava.ir.h5')\n"
        "ql.save(m, d + '/lava.pt')\n"
        "print(json.dumps({'numpy': numpy.__version__, 'torch': torch.__version__,\n"
        "                  'python': sys.version.split()[0],\n"
        "                  'same': ql.load(d + '/core.ir.h5').layers[0].synapse.weight.tolist()\n"
        "                          == ql.load(d + '/lava.ir.h5').layers[0].synapse.weight.tolist()}))\n",
        tmp_path)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["same"] and info["python"].startswith("3.10")
    a, b = ql.load(tmp_path / "core.ir.h5"), ql.load(tmp_path / "lava.ir.h5")
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.synapse.weight, lb.synapse.weight) and la.neuron.vth == lb.neuron.vth
    back = ql.load(tmp_path / "lava.pt")  # a checkpoint from torch 2.3 loads in the core's torch
    x, _ = ql.encode(ql.load_dataset("digits", timesteps=4).test, 4, samples=30)
    assert ql.verify(back, samples=30, backends=("torch", "reference")).equivalent
    assert np.array_equal(ql.simulate(back, x, backend="torch").spikes[-1],
                          ql.simulate(model, x, backend="torch").spikes[-1])


def test_core_without_lava_environment(tmp_path):
    env = {**os.environ, "QSNN_LAVA_PYTHON": "none"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "qsnn_lava.cli", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=600)

    p = run("demo", "--out", tmp_path / "demo", "--epochs", 1, "-q")
    assert p.returncode == 0, p.stderr
    assert "Lava step skipped" in p.stdout and "make lava" in p.stdout
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert rep["lava_skipped"] and rep["spike_mismatches"] == {"trained_vs_reference": 0}
    p = run("simulate", tmp_path / "demo" / "model.ir.h5", "--backend", "lava", "--samples", 3)
    assert p.returncode == 2 and "make lava" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = run("verify", tmp_path / "demo" / "model.pt", "--samples", 5, "--backends", "torch,reference", "-q")
    assert p.returncode == 0, p.stderr
