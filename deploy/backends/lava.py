"""Run an IR in Lava on CPU with the bit-accurate models (``Loihi2SimCfg(select_tag='fixed_pt')``), through
a Lava worker process that this module starts and supervises.

Lava lives in a Python 3.10 environment of its own (``lava_python``); this process never imports it.
Each call hands one request to a fresh ``qsnn_lava.deployment.lava_worker`` (the IR, the input spikes and
the result travel as files in a private temporary folder) and follows its progress on a pipe. The
worker runs in a session of its own, so a terminal's Ctrl-C reaches only this process, and Lava forks
its processes into the worker's process group. On every way out that is not success (Ctrl-C, SIGTERM
as ``Terminated``, an exception from ``on_chunk``, a timeout, a failing worker) the whole group is
killed, and on every way out the shared-memory segments the run left behind are removed.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from qsnn_lava.converters.lava_env import LAVA_SETUP_HINT, lava_importable
from qsnn_lava.errors import QsnnError, proc_stat, signals_deferred
from qsnn_lava.ir import Network
from qsnn_lava.record import Record

__all__ = ["LAVA_SETUP_HINT", "lava_python", "lava_available", "run", "trace", "probe", "call_worker"]

ENV_PYTHON = "QSNN_LAVA_PYTHON"
WORKER_MODULE = "qsnn_lava.deployment.lava_worker"
SHM = Path("/dev/shm")
LOG_TAIL_CHARS = 3000
# The worker's TMPDIR is its request folder, so that what Lava's multiprocessing leaves there when killed
# (pymp-*/listener-* sockets) goes with it; a socket path holds 107 characters, 32 of them Lava's own.
MAX_TMPDIR_CHARS = 70


def lava_python() -> str | None:
    """The Python that runs Lava: $QSNN_LAVA_PYTHON if set (empty or "none": no Lava here), else this
    interpreter when it can import Lava (found without importing it), else ``.venv-lava/bin/python``
    beside this environment (``make lava`` creates it); None when there is none."""
    value = os.environ.get(ENV_PYTHON)
    if value is not None:
        value = value.strip()
        return None if value.lower() in ("", "none") else value
    if lava_importable():
        return sys.executable
    beside = Path(sys.prefix).parent / ".venv-lava" / "bin" / "python"
    return str(beside) if beside.exists() else None


def lava_available() -> bool:
    """Whether a Lava environment is configured or found (``lava_python``)."""
    return lava_python() is not None


def _worker_python() -> str:
    python = lava_python()
    if python is None:
        raise QsnnError(LAVA_SETUP_HINT)
    found = shutil.which(python)
    if found is None:
        raise QsnnError(f"{ENV_PYTHON}='{python}' is not an executable Python. {LAVA_SETUP_HINT}")
    return found


# -- processes and shared memory ------------------------------------------------------------------------

def _stat(pid: str):
    """(state, ppid, pgrp) of a process from /proc, or None when it is gone."""
    fields = proc_stat(pid)
    return None if fields is None else (fields[0], int(fields[1]), int(fields[2]))


def _pids() -> list[str]:
    return [pid for pid in os.listdir("/proc") if pid.isdigit()] if os.path.isdir("/proc") else []


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for pid in _pids():
        st = _stat(pid)
        if st and st[2] == pgid and st[0] not in "ZX":
            out.append(int(pid))
    return out


def shm_segments() -> set[str]:
    """Names in /dev/shm (POSIX shared memory, where Lava's channels live)."""
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


def shm_in_use(exclude_pid: int | None = None) -> set[str]:
    """Segments of /dev/shm that a living process (other than ``exclude_pid``) maps or holds open
    (/proc/*/maps and /proc/*/fd)."""
    used, prefix = set(), f"{SHM}/"
    for pid in _pids():
        if exclude_pid is not None and int(pid) == exclude_pid:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at + len(prefix):].rstrip("\n").removesuffix(" (deleted)"))
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith(prefix):
                        used.add(target[len(prefix):].removesuffix(" (deleted)"))
    return used


def remove_orphan_shm(before: set[str], exclude_pid: int | None = None) -> list[str]:
    """Unlink the /dev/shm segments that are not in ``before`` and that no living process (other than
    ``exclude_pid``) maps or holds open: what killed Lava processes leave behind. The names removed."""
    new = shm_segments() - before
    if not new:
        return []
    removed = []
    for name in sorted(new - shm_in_use(exclude_pid)):
        with contextlib.suppress(FileNotFoundError):
            (SHM / name).unlink()  # appeared during our run and nobody maps it: Lava's, left by a kill
            removed.append(name)
    return removed



# -- the worker -----------------------------------------------------------------------------------------

class LavaWorker:
    """One ``lava_worker`` process (and the Lava processes it forks) serving one request in ``workdir``."""

    def __init__(self, python: str, workdir: Path):
        self.python, self.workdir = python, Path(workdir)
        self.proc = None
        self.read_fd = None
        self.shm_before: set[str] = set()
        self.shm_removed: list[str] = []

    def start(self, request: dict) -> None:
        """Write ``request.json`` and start the worker in a new session, its output into worker.log."""
        read_fd, write_fd = os.pipe()
        self.read_fd = read_fd
        try:
            request = dict(request, progress_fd=write_fd, client_pid=os.getpid())
            (self.workdir / "request.json").write_text(json.dumps(request))
            # one thread per Lava process: Lava's Conv model convolves with torch, a small op per step in each
            # of its processes, whose idle OpenMP threads would spin-wait on the cores the others need
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            if len(str(self.workdir)) <= MAX_TMPDIR_CHARS:  # Lava's temporary files go with the request
                env["TMPDIR"] = str(self.workdir)
            with open(self.workdir / "worker.log", "wb") as log, signals_deferred():
                self.shm_before = shm_segments()
                self.proc = subprocess.Popen([self.python, "-m", WORKER_MODULE, str(self.workdir)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
                                             start_new_session=True, env=env)
        except OSError as e:
            raise QsnnError(f"'{self.python}' cannot be started ({e.strerror}). {LAVA_SETUP_HINT}") from None
        finally:
            os.close(write_fd)  # the worker holds the only writing end now

    def exited(self) -> bool:
        """Whether the worker has exited (unreaped where waitid exists: its group id cannot be reused yet)."""
        if hasattr(os, "waitid"):
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        return self.proc.poll() is not None

    def follow(self, on_progress, deadline: float | None, on_timeout, cancel: threading.Event | None = None) -> None:
        """Pass each ``progress DONE TOTAL`` line to ``on_progress`` until the worker exits; call
        ``on_timeout()`` (which raises) once ``time.monotonic()`` passes ``deadline``; raise QsnnError when
        ``cancel`` is set (another shard of the same run failed or was interrupted)."""
        buf, reading = b"", True
        while True:
            if cancel is not None and cancel.is_set():
                raise QsnnError("Lava run cancelled: another shard of it stopped")
            exited = self.exited()
            if reading:
                ready, _, _ = select.select([self.read_fd], [], [], 0 if exited else 0.1)
                if ready:
                    data = os.read(self.read_fd, 65536)
                    reading = bool(data)
                    *lines, buf = (buf + data).split(b"\n")
                    for line in lines:
                        parts = line.split()
                        if len(parts) == 3 and parts[0] == b"progress":
                            on_progress(int(parts[1]), int(parts[2]))
            if exited and not (reading and ready):
                return  # exited, and nothing is left to read
            if deadline is not None and time.monotonic() > deadline:
                on_timeout()
            if not reading:
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the worker's process group (a no-op for what already ended), reap the worker, wait until
        no process of the group lives, and remove the shared-memory segments the run left behind."""
        with signals_deferred():
            if self.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            if self.read_fd is not None:
                os.close(self.read_fd)
                self.read_fd = None
            if self.proc is None:
                return
            end = time.monotonic() + 10
            while group_members(self.proc.pid) and time.monotonic() < end:
                time.sleep(0.02)
            self.shm_removed = remove_orphan_shm(self.shm_before)

    def result(self) -> tuple[dict, dict]:
        """(result.json, its arrays by name) of a finished worker; QsnnError for the user's problems,
        RuntimeError with the end of the worker's output for anything else."""
        rc, path = self.proc.returncode, self.workdir / "result.json"
        if rc == 0 and path.exists():
            result = json.loads(path.read_text())
            if "error" in result:
                raise QsnnError(result["error"])
            arrays = {name: np.load(self.workdir / f"{name}.npy", allow_pickle=False)
                      for name in result.get("arrays", [])}
            return result, arrays
        tail = self.log_tail()
        if f"No module named '{WORKER_MODULE.split('.')[0]}" in tail:
            raise QsnnError(f"'{self.python}' has no qsnn-lava installed. {LAVA_SETUP_HINT}")
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        raise RuntimeError(f"the Lava worker ({self.python}) {how}; the end of its output:\n{tail}")

    def log_tail(self) -> str:
        """The last ``LOG_TAIL_CHARS`` bytes of the worker's ``worker.log``, decoded as UTF-8 (undecodable bytes
        replaced); "" when it cannot be read."""
        with contextlib.suppress(OSError):
            text = (self.workdir / "worker.log").read_bytes()[-LOG_TAIL_CHARS:]
            return text.decode("utf-8", "replace")
        return ""


def call_worker(op: str, request: dict | None = None, *, net: Network | None = None, spikes=None,
                files: dict | None = None, progress: bool = False, on_chunk=None,
                timeout_s: float | None = None, cancel: threading.Event | None = None) -> tuple[dict, dict]:
    """Serve one request (``op`` and its fields) in a fresh Lava worker: (result.json, arrays by name).

    ``net`` travels as ``net.h5`` (``Network.save``, which validates), ``spikes`` as ``input.npy``, and
    ``files`` ({name in the request folder: source path}) as copies. ``progress`` shows a bar over Lava
    steps; ``on_chunk(steps_done, steps_total)`` is called after each chunk the worker reports.
    ``timeout_s`` bounds the whole call's wall time (worker start included); setting ``cancel`` (a
    threading.Event) from another thread stops the call with a QsnnError. Whatever the way out, the
    worker's process group is killed (after success only stragglers are left to kill), the shared memory
    left behind and the temporary folder are removed.
    """
    python = _worker_python()
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="qsnn-lava-"))
    bar, state = None, {"done": 0, "total": None}

    def on_progress(done, total):
        nonlocal bar
        state.update(done=done, total=total)
        if progress and bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, desc="lava", unit="step", leave=False)
        if bar is not None:
            bar.update(done - bar.n)
        if on_chunk and done > 0:
            on_chunk(done, total)

    def on_timeout():
        where = (f"at step {state['done']} of {state['total']}" if state["total"] is not None
                 else "before its first step")
        raise QsnnError(f"Lava run stopped after {timeout_s} s {where}; raise the timeout or verify fewer samples")

    worker = LavaWorker(python, workdir)
    try:
        req = {"op": op, **(request or {})}
        if net is not None:
            net.save(workdir / "net.h5")
            req["ir"] = "net.h5"
        if spikes is not None:
            np.save(workdir / "input.npy", np.asarray(spikes), allow_pickle=False)
            req["input"] = "input.npy"
        for name, source in (files or {}).items():
            shutil.copyfile(source, workdir / name)
        try:
            worker.start(req)
            worker.follow(on_progress, None if timeout_s is None else start + timeout_s, on_timeout, cancel)
        finally:
            worker.stop()
        return worker.result()
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(workdir, ignore_errors=True)  # the private request folder this call made (mkdtemp)


# -- the backend ----------------------------------------------------------------------------------------

def run(net: Network, spikes: np.ndarray, progress: bool = False, chunk_samples: int = 64,
        on_chunk=None, timeout_s: float | None = None, workers: int = 1) -> Record:
    """Run input spikes [T, N, n_in] through ``net`` in Lava; every layer's spikes (and a readout layer's
    voltage) as a Record.

    All samples of a shard go through one graph in one run (see converters.lava_graph for the reset/delay
    scheme), in chunks of ``chunk_samples`` so a progress bar can advance. ``workers`` > 1 splits the samples
    into that many contiguous shards, each run by a Lava worker of its own at the same time (independent
    graphs: the same spikes as one run, since every sample starts from the zero state). ``on_chunk(steps_done,
    steps_total)`` is called after each chunk, summed over the shards (a hook for progress and tests).
    ``timeout_s`` bounds the wall time; on expiry, or when one shard fails, the Lava processes of every shard
    are killed and a QsnnError says how far the run got.
    """
    from qsnn_lava.deployment.lava_worker import check_spikes

    spikes = check_spikes(net, spikes)
    t0 = time.perf_counter()
    n = spikes.shape[1]
    workers = max(1, min(int(workers), n))
    if workers == 1:
        results = [call_worker("run", {"chunk_samples": int(chunk_samples)}, net=net, spikes=spikes,
                               progress=progress, on_chunk=on_chunk, timeout_s=timeout_s)]
    else:
        results = _run_shards(net, spikes, workers, progress, int(chunk_samples), on_chunk, timeout_s)

    def joined(key):
        return np.concatenate([a[key] for _, a in results], axis=1)

    arrays = [joined(f"spikes_{i}") for i in range(len(net.layers))]
    volts = {layer.name: joined(f"voltage_{i}") for i, layer in enumerate(net.layers)
             if f"voltage_{i}" in results[0][1]}
    infos = [r["info"] for r, _ in results]
    info = dict(infos[0]) if workers == 1 else {
        **{k: max(i[k] for i in infos) for k in infos[0] if k.endswith("_s")},  # the shards overlap in time
        "steps": sum(i["steps"] for i in infos), "workers": workers, "shards": infos}
    info["seconds"] = time.perf_counter() - t0
    return Record("lava", [layer.name for layer in net.layers], arrays, info=info, voltages=volts)


def _run_shards(net: Network, spikes: np.ndarray, workers: int, progress: bool, chunk_samples: int, on_chunk,
                timeout_s: float | None) -> list:
    """``call_worker("run")`` for ``workers`` contiguous sample shards at once, one thread each; the results
    in shard order. The first failure (or Ctrl-C here) cancels the other shards, whose workers are killed."""
    edges = np.linspace(0, spikes.shape[1], workers + 1).astype(int)
    cancel, lock = threading.Event(), threading.Lock()
    done, total = [0] * workers, [0] * workers
    results, errors = [None] * workers, [None] * workers
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=0, desc="lava", unit="step", leave=False)

    def chunk(k, steps_done, steps_total):
        with lock:
            done[k], total[k] = steps_done, steps_total
            if bar is not None:
                bar.total = sum(total)
                bar.update(sum(done) - bar.n)
            if on_chunk:
                on_chunk(sum(done), sum(total))

    def shard(k):
        try:
            results[k] = call_worker("run", {"chunk_samples": chunk_samples}, net=net,
                                     spikes=np.ascontiguousarray(spikes[:, edges[k]:edges[k + 1]]),
                                     on_chunk=lambda d, t: chunk(k, d, t), timeout_s=timeout_s, cancel=cancel)
        except BaseException as e:  # noqa: B036 - handed to the caller's thread below
            errors[k] = e
            cancel.set()

    threads = [threading.Thread(target=shard, args=(k,), daemon=True) for k in range(workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException:
        cancel.set()  # Ctrl-C (or anything) here: every shard kills its Lava processes before we go on
        for t in threads:
            t.join()
        raise
    finally:
        if bar is not None:
            bar.close()
    first = next((e for e in errors if e is not None and not _is_cancel(e)), None) or next(
        (e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def _is_cancel(error: BaseException) -> bool:
    return isinstance(error, QsnnError) and str(error).startswith("Lava run cancelled")


def trace(net: Network, spikes: np.ndarray, layer_index: int):
    """u and v [T, n] (int64) of one layer for one sample (spikes [T, 1, n_in]) as Lava computes them.

    The worker runs that sample alone with Monitors on the layer's u and v and undoes the pipeline
    delay (``lava_worker.trace_in_process``).
    """
    spikes = np.asarray(spikes).reshape(net.timesteps, 1, net.n_in)
    _, arrays = call_worker("trace", {"layer_index": int(layer_index)}, net=net, spikes=spikes)
    return arrays["u"].astype(np.int64), arrays["v"].astype(np.int64)


def probe() -> dict:
    """Ask a Lava worker for its interpreter, package versions and whether lava-loihi is installed;
    raises QsnnError (with ``LAVA_SETUP_HINT``) when there is no working Lava environment."""
    result, _ = call_worker("probe")
    return result
