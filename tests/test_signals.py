"""Ctrl-C and SIGTERM during a Lava run stop everything: real CLI processes, real Lava, real signals.

A terminal's Ctrl-C sends SIGINT to the foreground process group (the CLI's); a service manager sends
SIGTERM to the CLI. Either way the CLI must exit within seconds with one line (130 / 143), and the Lava
worker, every Lava process it forked, every shared-memory segment and every partial output must be gone.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from netgen import random_network, random_spikes
from procs import descendants, orphaned_shm, shm, still_alive, wait_for

LAVA_PROCESSES = 10  # source, 3 Dense, 3 LIFReset, 3 Extractors: running once this many descendants exist


def simulate_command(tmp_path, n_samples, backend="lava"):
    """`qsnn-lava simulate` of a small 3-layer IR on ``n_samples`` random samples (5 steps each)."""
    rng = np.random.default_rng(0)
    net = random_network(rng, sizes=(16, 12, 9, 5), timesteps=5)
    net.save(tmp_path / "net.h5")
    np.save(tmp_path / "x.npy", np.transpose(random_spikes(rng, net, n_samples), (1, 0, 2)))  # [N, T, n]
    return [sys.executable, "-m", "qsnn_lava.cli", "simulate", str(tmp_path / "net.h5"), "--backend", backend,
            "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "-q"]


@pytest.fixture
def tmpdir_short():
    """A short, private TMPDIR for the CLI: its worker's request folder (with Lava's temporary sockets
    inside, whose paths must stay short) lands here, so the tests can see it go."""
    path = tempfile.mkdtemp(prefix="qsnn-t-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli_env(tmpdir, **extra):
    return dict(os.environ, TMPDIR=tmpdir, **extra)


@pytest.mark.lava
@pytest.mark.parametrize("sig, code, line", [(signal.SIGINT, 130, "qsnn-lava: interrupted"),
                                             (signal.SIGTERM, 143, "qsnn-lava: terminated")])
def test_signal_during_lava_run_stops_everything(tmp_path, tmpdir_short, sig, code, line):
    shm_before = shm()
    # SIGINT at its default, as under a terminal: a suite started in the background of a non-interactive
    # shell (`make test &`) runs with SIGINT ignored, which its children would inherit
    cli = subprocess.Popen(simulate_command(tmp_path, 3000), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True, env=cli_env(tmpdir_short),
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        running = wait_for(lambda: len(descendants(cli.pid)) >= LAVA_PROCESSES + 1 and descendants(cli.pid),
                           120, "the Lava worker and its processes")
        time.sleep(1.0)  # well into the run (3000 samples take > 10 s)
        assert cli.poll() is None, "the run ended before the signal; give it more samples"
        running.update(descendants(cli.pid))
        run_shm = shm() - shm_before
        assert run_shm  # Lava's channels live in /dev/shm: the check below means something
        t0 = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(cli.pid, sig)  # as a terminal's Ctrl-C: the whole foreground group
        else:
            os.kill(cli.pid, sig)
        out, err = cli.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if cli.poll() is None:
            cli.kill()
    assert elapsed < 5, f"the CLI took {elapsed:.1f} s to stop"
    assert cli.returncode == code
    assert err.splitlines() == [line], err
    assert still_alive(running) == []
    assert orphaned_shm(run_shm) == set()
    assert not (tmp_path / "y.npy").exists()
    assert os.listdir(tmpdir_short) == []  # the request folder is gone, Lava's temporary files with it
    assert sorted(os.listdir(tmp_path)) == ["net.h5", "x.npy"]  # and no partial output


def test_without_lava_environment_lava_is_refused_and_reference_works(tmp_path, tmpdir_short):
    from qsnn_lava.deployment.backends.lava import LAVA_SETUP_HINT

    env = cli_env(tmpdir_short, QSNN_LAVA_PYTHON="none")
    p = subprocess.run(simulate_command(tmp_path, 3), capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"qsnn-lava: error: {LAVA_SETUP_HINT}"]
    assert not (tmp_path / "y.npy").exists()
    p = subprocess.run(simulate_command(tmp_path, 3, backend="reference"), capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "y.npy").shape == (3, 5, 5)


@pytest.mark.lava
def test_lava_run_from_the_cli_prints_no_lava_noise(tmp_path, tmpdir_short):
    """lava-dl's and Lava's import messages stay in the worker's captured output."""
    p = subprocess.run(simulate_command(tmp_path, 4), capture_output=True, text=True, env=cli_env(tmpdir_short))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("lava: 4 samples in ")
    assert np.load(tmp_path / "y.npy").shape == (4, 5, 5)
    assert os.listdir(tmpdir_short) == []


@pytest.mark.lava
def test_worker_cleans_up_after_a_killed_client(tmp_path, tmpdir_short):
    """SIGKILL gives the CLI no chance to clean up: the worker notices that its client is gone, kills
    Lava's processes, removes their shared memory and its request folder, and exits."""
    shm_before = shm()
    cli = subprocess.Popen(simulate_command(tmp_path, 3000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, env=cli_env(tmpdir_short))
    try:
        running = wait_for(lambda: len(descendants(cli.pid)) >= LAVA_PROCESSES + 1 and descendants(cli.pid),
                           120, "the Lava worker and its processes")
        time.sleep(1.0)
        running.update(descendants(cli.pid))
        run_shm = shm() - shm_before
        cli.kill()
    finally:
        cli.kill()
        cli.wait()
    wait_for(lambda: still_alive(running) == [], 10, "the worker and Lava's processes to end")
    assert orphaned_shm(run_shm) == set()
    assert os.listdir(tmpdir_short) == []
