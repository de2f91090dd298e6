"""Devices and several processes (qsnn_lava/distributed.py): real torchrun, real gloo, real Lava.

No GPU here (nor in CI): the device-agnostic code paths run on the CPU; the GPU-only branches (the
unfold + matmul convolution, the float type chosen on a GPU) are checked on the CPU against their CPU twins.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qsnn_lava as ql
from qsnn_lava import dynamics as dyn
from qsnn_lava.distributed import launch, resolve_device, shard_slice, torchrun_command
from qsnn_lava.io import load_checkpoint
from procs import descendants, still_alive, wait_for

NO_GPU = not torch.cuda.is_available()
# a small conv net with folded BatchNorm: the state that must be synchronised across processes
TINY = dict(arch="vgg", channels=[4, 4], epochs=1, timesteps=2, batch_size=64, seed=3)
TINY_ARGS = ["--arch", "vgg", "--channels", "4", "4", "--epochs", "1", "--timesteps", "2", "--batch-size", "64",
             "--seed", "3"]


def test_devices_are_named_and_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    if NO_GPU:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ql.QsnnError, match="sees no CUDA GPU here; use --device cpu"):
            resolve_device("cuda:0")
    for bad in ("gpu", "cuda:x", "cpu:0", "tpu"):
        with pytest.raises(ql.QsnnError, match="give auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_shards_are_contiguous_and_cover_the_batch_in_order():
    for n in range(0, 11):
        for world in range(1, 5):
            parts = [list(range(n))[shard_slice(n, r, world)] for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_gpu_convolution_as_matmul_equals_conv2d_exactly():
    """The integer path's convolution on GPUs (unfold + matmul) against torch's conv2d, run on the CPU."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 4, 9, 7, generator=gen) > 0.5).double()
    w = torch.randint(-127, 128, (6, 4, 3, 3), generator=gen).double()
    for stride, padding, groups in (((1, 1), (1, 1), 1), ((2, 2), (1, 1), 2), ((2, 1), (0, 2), 2), ((1, 1), (0, 0), 4)):
        wg = w[: 4 if groups == 4 else 6, : 4 // groups]  # groups = 4: depthwise, as the sum pools
        want = F.conv2d(x, wg, stride=stride, padding=padding, groups=groups)
        assert torch.equal(dyn._conv_as_matmul(x, wg, stride, padding, groups), want)


def test_exact_float_type_follows_the_bound():
    w = torch.tensor([[3, -4]])
    assert dyn.exact_float((1 << 24) - 1, w) == torch.float32
    assert dyn.exact_float(1 << 24, w) == torch.float64


def test_cpu_and_auto_train_the_same_network():
    """The device-agnostic path: "auto" is the CPU here and must give the identical model and spikes."""
    kw = dict(epochs=1, hidden=[16], timesteps=2, batch_size=128)
    a, b = ql.train(device="cpu", **kw), ql.train(device="auto", **kw)
    if NO_GPU:
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    x, _ = ql.encode(ql.load_dataset("digits").test, 2, samples=50)
    rec_a, rec_b = ql.simulate(a, x, backend="torch"), ql.simulate(b, x, backend="torch")
    assert all(np.array_equal(p, q) for p, q in zip(rec_a.spikes, rec_b.spikes))
    assert sum(int(s.sum()) for s in rec_a.spikes) > 0  # spikes, not silence
    ref = ql.verify(a, samples=50, backends=("torch", "reference"), device="auto")
    assert ref.equivalent


def test_bad_device_and_nproc_are_refused_in_one_line(tmp_path, capsys):
    from qsnn_lava.cli import main

    assert main(["train", "--out", str(tmp_path / "m.pt"), "--device", "gpu", "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "qsnn-lava: error: device 'gpu' is not known; give auto, cpu, cuda or cuda:N"]
    assert main(["train", "--out", str(tmp_path / "m.pt"), "--nproc", "0", "-q"]) == 2
    assert "--nproc 0" in capsys.readouterr().err
    # refused before torchrun starts: one line, not one per process
    assert main(["train", "--out", str(tmp_path / "m.pt"), "--nproc", "2", "--device", "cuda:0", "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "qsnn-lava: error: device 'cuda:0' with 2 processes: give --device cuda (each process takes the GPU of its "
        "local rank) or cpu"]
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.lava
def test_two_gloo_processes_train_as_one_process_with_the_same_global_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo), a conv net with folded BatchNorm, one short epoch on digits. The
    checkpoint equals one process's with the same global batch: latent weights and BatchNorm state to within
    float32 reduction order, integer weights and biases identical, the same test counts and training state;
    it converts and verifies with 0 mismatches torch = reference = Lava."""
    out = tmp_path / "ddp.pt"
    code = launch(["train", *TINY_ARGS, "--out", str(out), "--device", "cpu", "-q"], 2)
    assert code == 0
    two = load_checkpoint(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (faster on a loaded machine; the results do not depend on it)
    try:
        one = ql.train(**TINY, device="cpu", out=tmp_path / "one.pt")
    finally:
        torch.set_num_threads(threads)
    one_ckpt = load_checkpoint(tmp_path / "one.pt")
    assert two["meta"] == one_ckpt["meta"] | {"test_accuracy": two["meta"]["test_accuracy"],
                                              "train_seconds": two["meta"]["train_seconds"]}
    for k, v in one.state_dict().items():
        assert float((two["state_dict"][k].double() - v.double()).abs().max()) < 1e-5, k
    net2, net1 = ql.convert(out), ql.convert(one)
    for a, b in zip(net2.layers, net1.layers):
        assert np.array_equal(a.synapse.weight, b.synapse.weight), a.name
        assert np.array_equal(a.neuron.bias_mant, b.neuron.bias_mant) and a.neuron.bias_exp == b.neuron.bias_exp
    st2, st1 = two["training"], one_ckpt["training"]
    assert st2.keys() == st1.keys() and st2["epoch"] == st1["epoch"] == 1
    assert st2["history"]["test_acc"] == st1["history"]["test_acc"]  # sharded evaluation: the same counts
    assert abs(st2["history"]["loss"][0] - st1["history"]["loss"][0]) < 1e-6
    assert torch.equal(st2["generator"], st1["generator"])  # the same shuffling continues on resume
    assert st2["history"]["test_acc"][0] > 0.15  # it learned something: the comparison is not of silence
    res = ql.verify(out, samples=12, backends=("torch", "reference", "lava"), device="cpu")
    assert res.equivalent and res.report["spike_mismatches"] == {"trained_vs_reference": 0, "reference_vs_lava": 0}

    # verification split across 2 processes (torchrun by hand) reports what one process does
    args = ["verify", str(out), "--samples", "41", "--backends", "torch,reference", "--device", "cpu", "-q",
            "--out", str(tmp_path / "rep")]
    p = subprocess.run(torchrun_command(args, 2), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("EQUIVALENT") == 1  # rank 0 alone reports
    two_rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    one_rep = ql.verify(out, samples=41, backends=("torch", "reference"), device="cpu").report
    for key in ("accuracy", "samples", "samples_per_backend", "spike_mismatches", "equivalent"):
        assert two_rep[key] == one_rep[key], key
    assert two_rep["overflow"]["runtime"] == one_rep["overflow"]["runtime"]
    assert {k: c["per_layer"] for k, c in two_rep["comparisons"].items()} == \
        {k: c["per_layer"] for k, c in one_rep["comparisons"].items()}


def test_sigterm_stops_torchrun_and_every_training_process(tmp_path):
    """`qsnn-lava train --nproc 2` under SIGTERM: the launcher, torchrun and both workers are gone within
    seconds; exit 143."""
    out = tmp_path / "long.pt"
    cmd = [sys.executable, "-m", "qsnn_lava", "train", "--nproc", "2", "--hidden", "16", "--timesteps", "2",
           "--epochs", "10000", "--device", "cpu", "--out", str(out), "-q"]
    cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: out.exists(), 120, "the first epoch's checkpoint (both workers training)")
        running = descendants(cli.pid)
        assert len(running) >= 3  # torchrun and its two workers
        t0 = time.monotonic()
        os.kill(cli.pid, signal.SIGTERM)
        _, err = cli.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if cli.poll() is None:
            cli.kill()
    assert elapsed < 8, f"the launcher took {elapsed:.1f} s to stop"
    assert cli.returncode == 143
    assert err.splitlines()[-1] == "qsnn-lava: terminated", err[-2000:]
    wait_for(lambda: still_alive(running) == [], 5, "torchrun and its workers to end")


def test_torchrun_command_runs_the_package_in_n_processes():
    cmd = torchrun_command(["train", "--out", "m.pt"], 3)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=3" in cmd and cmd[-4:] == ["qsnn_lava", "train", "--out", "m.pt"]
