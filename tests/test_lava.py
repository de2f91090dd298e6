"""The Lava path against real Lava processes (Loihi2SimCfg fixed_pt), no mocks."""
import os

import numpy as np
import pytest

from qsnn_lava.converters.lava_graph import lava_dense_weights
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from netgen import random_network, random_spikes
from procs import descendants, orphaned_shm, shm, still_alive
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import LIF, Dense, Layer, Network
from qsnn_lava.reference import simulate

pytestmark = pytest.mark.lava


def assert_equal_spikes(net, x):
    ref, lava = simulate(net, x), run_lava(net, x)
    c = compare(ref, lava)
    assert c["mismatches"] == 0, c["first_divergence"]
    assert sum(int(s.sum()) for s in ref.spikes) > 0  # a silent network proves nothing
    return ref


@pytest.mark.parametrize("seed", range(4))
def test_random_networks_match_reference(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng, sizes=(16, 12, 9, 5), timesteps=int(rng.integers(1, 7)))
    assert_equal_spikes(net, random_spikes(rng, net, n_samples=9))


def test_excitatory_only_and_even_256_weights():
    rng = np.random.default_rng(7)
    net = random_network(rng, sizes=(10, 8, 4), wmax=255, exc_only=True, bias=False)
    assert_equal_spikes(net, random_spikes(rng, net, 6))
    w = 2 * rng.integers(-128, 128, (6, 10))
    net = Network((10,), [Layer("even", Dense(w), LIF(6, vth=300, du=100, dv=50))], 4).validate()
    assert_equal_spikes(net, random_spikes(rng, net, 6))


def test_near_24_bit_limits_wrap_and_saturation():
    """Weights and exponent chosen so that u wraps and v saturates; Lava and reference still agree."""
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (8, 64))
    w[:4] = 127  # these rows drive u past 2^23 (64 * 127 << 4 << 6 > 2^23)
    net = Network((64,), [Layer("hot", Dense(w, weight_exp=4), LIF(8, vth=(1 << 17) - 1, du=0, dv=0))], 6)
    x = np.ones((6, 3, 64), np.uint8)
    x[:, 1] = random_spikes(rng, net, 1)[:, 0]
    from qsnn_lava import dynamics as dyn
    import torch
    a = dyn.dense_accumulate(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(w), 4)
    _, u, v = dyn.lif_run(a, dyn.LIFParams(vth=(1 << 17) - 1, du=0, dv=0), trace=True)
    assert (u.abs() > (1 << 22)).any() and (v.abs() == (1 << 23) - 1).any()  # the limits are reached
    ref, lava = simulate(net, x), run_lava(net, x)
    assert compare(ref, lava)["mismatches"] == 0


def perturbed_case():
    """A network, a copy whose neuron 3 of the second layer gets much more input, and inputs."""
    rng = np.random.default_rng(11)
    net = random_network(rng, sizes=(16, 10, 6), timesteps=6, bias=False)
    bad = Network(net.input_shape, [Layer(layer.name, Dense(layer.synapse.weight.copy(), layer.synapse.weight_exp),
                                          layer.neuron) for layer in net.layers], net.timesteps)
    bad.layers[1].synapse.weight[3] += 60
    return net, bad, random_spikes(rng, net, 4, rate=0.6)


def test_perturbed_weight_is_located():
    """Change one weight on the Lava side only: the comparison names layer, neuron and first step."""
    net, bad, x = perturbed_case()
    c = compare(simulate(net, x), run_lava(bad, x))
    fd = c["first_divergence"]
    assert c["mismatches"] > 0 and fd["layer"] == net.layers[1].name and fd["neuron"] == 3
    assert c["per_layer"][net.layers[0].name] == 0


def test_dense_weight_encoding_is_exact_for_mixed_odd_weights():
    w = np.array([[3, -5, 127, -128]])
    lw, le = lava_dense_weights(w, 0)
    assert le == -1 and np.array_equal(lw, 2 * w)
    lw, le = lava_dense_weights(np.array([[2, -4]]), 1)
    assert le == 1  # even or one-sign weights pass unchanged


def test_wrong_input_shape_is_refused_before_building():
    rng = np.random.default_rng(0)
    net = random_network(rng)
    with pytest.raises(QsnnError, match="input spikes have shape"):
        run_lava(net, np.zeros((net.timesteps, 2, net.n_in + 1), np.uint8))


def test_processes_stopped_after_interrupt_timeout_and_error():
    """Ctrl-C mid-run (from on_chunk), a timeout and an error reported by the worker: afterwards the
    worker and every Lava process it forked are gone, and no shared-memory segment is left behind."""
    from qsnn_lava.deployment.backends.lava import trace as lava_trace

    rng = np.random.default_rng(5)
    net = random_network(rng, sizes=(8, 6, 4), timesteps=4)
    x = random_spikes(rng, net, 6)
    before_kids, before_shm = descendants(os.getpid()), shm()
    seen, seen_shm = {}, set()

    def interrupt(done, total):
        seen.update(descendants(os.getpid()))
        seen_shm.update(shm() - before_shm)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_lava(net, x, chunk_samples=2, on_chunk=interrupt)
    assert len(set(seen) - set(before_kids)) >= 8 and seen_shm  # the worker and Lava's processes were running
    assert still_alive(seen) == [] and orphaned_shm(seen_shm) == set()
    with pytest.raises(QsnnError, match="stopped after 0.0 s"):
        run_lava(net, x, chunk_samples=1, timeout_s=0.0)
    with pytest.raises(QsnnError, match="layer index 5 is outside"):
        lava_trace(net, x[:, :1], 5)
    assert compare(simulate(net, x), run_lava(net, x))["mismatches"] == 0  # a normal run afterwards still works
    assert set(descendants(os.getpid())) - set(before_kids) == set()
    assert orphaned_shm(shm() - before_shm) == set()


def test_sample_shards_on_two_workers_equal_one_graph_and_clean_up():
    """workers = 2: two Lava workers on contiguous sample shards at once give the spikes of one graph; a
    Ctrl-C from one shard's chunk stops both, and nothing is left running or in shared memory."""
    rng = np.random.default_rng(11)
    net = random_network(rng, sizes=(12, 9, 5), timesteps=3)
    x = random_spikes(rng, net, 7)
    before_kids, before_shm = descendants(os.getpid()), shm()
    one, two = run_lava(net, x), run_lava(net, x, workers=2)
    assert two.info["workers"] == 2 and len(two.info["shards"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(one.spikes, two.spikes))
    assert compare(simulate(net, x), two)["mismatches"] == 0

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_lava(net, x, workers=2, chunk_samples=1, on_chunk=interrupt)
    assert set(descendants(os.getpid())) - set(before_kids) == set()
    assert orphaned_shm(shm() - before_shm) == set()


def test_worker_reports_versions_and_keeps_lava_noise_out_of_the_protocol():
    from qsnn_lava.deployment.backends.lava import probe

    p = probe()
    assert p["versions"]["lava-nc"] == "0.10.0" and p["versions"]["python"].startswith("3.10")
    assert p["loihi_installed"] in (True, False)
    assert p["omp_num_threads"] == "1"  # Lava's processes each convolve with torch: one thread each, no spinning


def _fake_python(tmp_path, body):
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_failing_worker_raises_with_its_output_and_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    rng = np.random.default_rng(0)
    net = random_network(rng)
    x = random_spikes(rng, net, 2)
    monkeypatch.setenv("QSNN_LAVA_PYTHON", _fake_python(tmp_path, 'echo "worker went wrong" >&2; exit 3'))
    with pytest.raises(RuntimeError, match="exited with status 3(.|\n)*worker went wrong"):
        run_lava(net, x)
    if os.path.exists("/usr/bin/python3"):  # a real Python without qsnn-lava: the setup hint, not a traceback
        monkeypatch.setenv("QSNN_LAVA_PYTHON", _fake_python(tmp_path, 'cd / && exec /usr/bin/python3 -I "$@"'))
        with pytest.raises(QsnnError, match="has no qsnn-lava installed.*make lava"):
            run_lava(net, x)
    monkeypatch.setenv("QSNN_LAVA_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(QsnnError, match="QSNN_LAVA_PYTHON=.* is not an executable Python"):
        run_lava(net, x)
    assert os.listdir(tmp_path / "tmp") == []  # each call removed its request folder


def test_lava_python_choice(tmp_path, monkeypatch):
    import sys

    from qsnn_lava.deployment.backends import lava as backend

    for value in ("", "none", "None "):
        monkeypatch.setenv("QSNN_LAVA_PYTHON", value)
        assert backend.lava_python() is None and not backend.lava_available()
    monkeypatch.setenv("QSNN_LAVA_PYTHON", "/opt/lava/bin/python")
    assert backend.lava_python() == "/opt/lava/bin/python"
    monkeypatch.delenv("QSNN_LAVA_PYTHON")
    if backend.lava_importable():  # Lava imports here (found, not imported): this interpreter runs it
        assert backend.lava_python() == sys.executable
    monkeypatch.setattr(backend, "lava_importable", lambda: False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    assert backend.lava_python() is None
    beside = tmp_path / ".venv-lava" / "bin" / "python"
    beside.parent.mkdir(parents=True)
    beside.write_text("")
    assert backend.lava_python() == str(beside)


def test_divergence_is_diagnosed_with_traces_and_cause():
    from qsnn_lava.deployment.backends.lava import trace as lava_trace
    from qsnn_lava.deployment.verify import diagnose
    from qsnn_lava.reference import trace as ref_trace

    net, bad, x = perturbed_case()
    fd = compare(simulate(net, x), run_lava(bad, x))["first_divergence"]
    d = diagnose(net, x, fd, ref_trace, lambda n, s, li: lava_trace(bad, s, li))
    assert d["likely_cause"] == "synaptic input (weights)"
    assert fd["timestep"] in d["steps"] and d["a"]["u"] != d["b"]["u"]


@pytest.mark.parametrize("ua,va,ub,vb,t,cause", [
    ([0, 100], [0, 100], [0, 100 - (1 << 24)], [0, 100], 1, "24-bit wrap of u"),
    ([64, 64], [64, 128], [64, 64], [64, 129], 1, "rounding of decay"),
    ([0, 640, 640], [0, 640, 0], [0, 0, 640], [0, 0, 640], 1, "delay offset"),
    ([0, 128], [0, 128], [0, 256], [0, 256], 1, "weight exponent"),
    ([64, 64], [(1 << 23) - 1, 5], [64, 64], [(1 << 23) - 10, 5], 0, "voltage saturation"),
    ([64, 64], [64, 640], [64, 64], [64, 640], 1, "threshold comparison"),
])
def test_likely_cause_rules(ua, va, ub, vb, t, cause):
    from qsnn_lava.deployment.verify import likely_cause
    assert likely_cause(*(np.array(z) for z in (ua, va, ub, vb)), vth=10, t=t) == cause
