"""The Lava worker: runs Lava for the core, in the Lava environment, one request per process.

    python -m qsnn_lava.deployment.lava_worker REQUEST_DIR

Lava (lava-nc 0.10.0, lava-dl 0.6.0) needs Python 3.10, numpy < 2 and torch 2.3, so it lives in an
interpreter of its own; the client (``qsnn_lava.deployment.backends.lava``) starts this module there, in a
new session, and owns its process group: Lava forks its processes into it, and the client kills the
whole group when a run is interrupted, times out or fails.

Protocol (files only, never pickles):
- in REQUEST_DIR: ``request.json`` = {"op": ..., "progress_fd": fd or null, "client_pid": pid, op
  fields}, and the files it names: an IR (``Network.save``), input spikes [T, N, n_in] (``np.save``),
  a lava-dl netx file.
  ops: "run" (every layer's spikes, and ``voltage_<i>`` of a readout layer i; field ``chunk_samples``),
  "trace" (u and v of one layer for one sample; ``layer_index``), "run_netx" (the output layer's spikes
  of a netx file; ``timesteps``, ``n_layers``, ``hw``, ``input_shape``), "probe" (versions: does the
  worker work?).
- progress: lines ``progress DONE TOTAL`` (Lava time steps) on the inherited pipe ``progress_fd``, a
  channel of its own, so Lava's import noise on stdout/stderr (which the client captures) cannot
  corrupt it.
- out: arrays as ``NAME.npy`` and ``result.json`` = {"arrays": [NAME, ...], "info": {...}, op fields},
  or {"error": message} for a QsnnError (a problem the user can fix). Exit status 0 in both cases;
  anything else is a bug: a traceback on stderr and exit status 1.

Lava processes are always stopped here (``runner.stop()``), on success and on error. Should the client
die without cleaning up (SIGKILL), the worker notices (its parent changes), kills the rest of its group,
removes the shared memory left behind and its request folder, and exits.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from qsnn_lava.errors import QsnnError

OPS = ("run", "trace", "run_netx", "probe")


def check_spikes(net, spikes) -> np.ndarray:
    """Input spikes as a numeric array [T, N, n_in] for ``net``; QsnnError naming the expected shape."""
    spikes = np.asarray(spikes)
    if spikes.dtype.kind not in "biuf" or spikes.ndim != 3 or spikes.shape[0] != net.timesteps \
            or spikes.shape[2] != net.n_in:
        raise QsnnError(f"input spikes have shape {spikes.shape} and dtype {spikes.dtype}; this network takes "
                        f"numeric spikes [T={net.timesteps}, N, {net.n_in}]")
    return spikes


# -- Lava, in this process ------------------------------------------------------------------------------

def run_in_process(net, spikes: np.ndarray, chunk_samples: int = 64, on_progress=None):
    """Run input spikes [T, N, n_in] through ``net`` in one Lava graph, here; (every layer's zero-delay
    spikes [T, N, n], info); a readout layer's voltage [T, N, n] (int32, read with a Monitor) is in
    ``info["voltages"]`` under its layer index. ``on_progress(steps_done, steps_total)`` follows the run
    chunk by chunk. With recurrent layers the run also pauses at each sample boundary of each such layer
    and zeroes its recurrent Dense's buffer (``lava_graph.recurrent_boundaries``)."""
    from qsnn_lava.converters import lava_graph
    from qsnn_lava.converters.lava_env import import_lava

    t0 = time.perf_counter()
    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.monitor.process import Monitor

    spikes = check_spikes(net, spikes)
    t1 = time.perf_counter()
    graph = lava_graph.build(net, spikes)
    cfg = lava_graph.run_config(net)
    monitors = {}  # layer index -> Monitor of a readout layer's v
    for i, layer in enumerate(net.layers):
        if layer.neuron.type == "readout":
            monitors[i] = Monitor()
            monitors[i].probe(graph.lifs[i].v, graph.steps)
    t2 = time.perf_counter()
    raw = [np.zeros((sink.in_port.shape[0], graph.steps), np.uint8) for sink in graph.sinks]
    chunk = max(1, int(chunk_samples)) * net.timesteps
    runner = graph.lifs[-1]
    boundaries = lava_graph.recurrent_boundaries(graph, net.timesteps, spikes.shape[1])
    stops = sorted(boundaries, reverse=True)  # pop() gives the next one
    if on_progress:
        on_progress(0, graph.steps)
    try:
        done = 0
        while done < graph.steps:
            k = min(chunk, graph.steps - done, (stops[-1] - done) if stops else chunk)
            runner.run(condition=RunSteps(num_steps=k, blocking=False), run_cfg=cfg)
            for step in range(done, done + k):  # drain all extractors step by step: none may fill up
                for buf, sink in zip(raw, graph.sinks):
                    buf[:, step] = sink.receive()
            runner.wait()
            done += k
            if stops and stops[-1] == done:  # a sample ends here for these recurrent layers
                for proc in boundaries[stops.pop()]:
                    proc.a_buff.set(np.zeros(proc.a_buff.shape, np.int32))
            if on_progress:
                on_progress(done, graph.steps)
        volts = {i: np.asarray(m.get_data()[graph.lifs[i].name]["v"]).T for i, m in monitors.items()}
    finally:
        runner.stop()  # a no-op when no runtime was created
    t3 = time.perf_counter()
    out = [lava_graph.unpack(r, net.timesteps, d, spikes.shape[1]) for d, r in zip(graph.depths, raw)]
    volts = {i: lava_graph.unpack(v, net.timesteps, graph.depths[i], spikes.shape[1], np.int32)
             for i, v in volts.items()}
    return out, {"lava_import_s": t1 - t0, "build_s": t2 - t1, "run_s": t3 - t2, "steps": graph.steps,
                 "voltages": volts}


def trace_in_process(net, spikes: np.ndarray, layer_index: int):
    """u and v [T, n] of one layer for one sample (spikes [T, 1, n_in]) as Lava computes them, here.

    Runs that sample alone with Monitors on the layer's u and v (few values, so Var reads are cheap)
    and undoes the pipeline delay: zero-delay step tau is Lava step tau + depth + 1.
    """
    from qsnn_lava.converters import lava_graph
    from qsnn_lava.converters.lava_env import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.monitor.process import Monitor

    if not 0 <= layer_index < len(net.layers):
        raise QsnnError(f"layer index {layer_index} is outside the network's {len(net.layers)} layers")
    spikes = check_spikes(net, np.asarray(spikes).reshape(net.timesteps, 1, net.n_in))
    graph = lava_graph.build(net, spikes, record_all=False)
    lif = graph.lifs[layer_index]
    mon_u, mon_v = Monitor(), Monitor()
    mon_u.probe(lif.u, graph.steps)
    mon_v.probe(lif.v, graph.steps)
    runner = graph.lifs[-1]
    try:
        runner.run(condition=RunSteps(num_steps=graph.steps, blocking=False), run_cfg=lava_graph.run_config(net))
        for _ in range(graph.steps):
            graph.sinks[-1].receive()
        runner.wait()
        u = np.asarray(mon_u.get_data()[lif.name]["u"])
        v = np.asarray(mon_v.get_data()[lif.name]["v"])
    finally:
        runner.stop()
    lo = graph.depths[layer_index]
    return u[lo: lo + net.timesteps].astype(np.int64), v[lo: lo + net.timesteps].astype(np.int64)


def run_netx_in_process(path, spikes: np.ndarray, timesteps: int, n_layers: int, hw: bool = False,
                        input_shape=None, on_progress=None) -> np.ndarray:
    """Input spikes [T, N, n_in] -> output-layer spikes [T, N, n_out] of the lava-dl netx network at
    ``path``, run here (Loihi2HwCfg with ``hw``, else Loihi2SimCfg fixed_pt). ``n_layers`` counts neuron
    layers (not flatten). With a (C, H, W) ``input_shape`` the flat input is reshaped and transposed to
    the (W, H, C) port netx gives a conv-first network. Samples run back to back with netx's own
    ``reset_interval = T, reset_offset = 1`` (the same windows as our graph builder); the recurrent buffers of
    ``dense_rec`` blocks are zeroed between samples (``_netx_recurrent_boundaries``)."""
    from qsnn_lava.converters import lava_graph
    from qsnn_lava.converters.lava_env import import_lava

    import_lava()
    from lava.lib.dl.netx.hdf5 import Network as NetxNetwork
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    T, N, _ = spikes.shape
    if T != timesteps:
        raise QsnnError(f"input spikes have {T} time steps per sample; the netx network is run with {timesteps}")
    steps = N * T + n_layers
    net = NetxNetwork(net_config=str(path), reset_interval=T, reset_offset=1)
    src, sink = Source(data=lava_graph.source_data(spikes, steps)), Sink(shape=net.out.shape, buffer=steps)
    port = src.s_out
    if input_shape is not None and len(input_shape) == 3:
        port = port.reshape(tuple(input_shape)).transpose([2, 1, 0])
    port.connect(net.inp)
    net.out.connect(sink.a_in)
    cfg = Loihi2HwCfg() if hw else Loihi2SimCfg(select_tag="fixed_pt")
    stops = _netx_recurrent_boundaries(net, T, N)
    if on_progress:
        on_progress(0, steps)
    try:
        done = 0
        for stop, procs in sorted(stops.items()) + [(steps, [])]:
            net.run(condition=RunSteps(num_steps=stop - done), run_cfg=cfg)
            done = stop
            for proc in procs:
                proc.a_buff.set(np.zeros(proc.a_buff.shape, np.int32))
        raw = np.asarray(sink.data.get())
    finally:
        net.stop()
    if on_progress:
        on_progress(steps, steps)
    return lava_graph.unpack(raw, T, n_layers, N)  # netx: a sequential chain, depth = number of layers


def _netx_recurrent_boundaries(net, timesteps: int, n_samples: int) -> dict:
    """{Lava step: [recurrent synapse processes]} of a netx network's ``RecurrentDense`` blocks (lava-dl's
    ``dense_rec``): block j of the chain has depth j + 1, and its recurrent Dense's buffer is zeroed after Lava
    step k*T + j + 1 for every sample k >= 1, as for our own graph (``lava_graph.recurrent_boundaries``), so
    a sample's last spikes do not reach the next sample."""
    from lava.lib.dl.netx.blocks.process import RecurrentDense

    out = {}
    for j, block in enumerate(net.layers):
        if isinstance(block, RecurrentDense):
            for k in range(1, n_samples):
                out.setdefault(k * timesteps + j + 1, []).append(block.synapse_rec)
    return out


def probe() -> dict:
    """This interpreter's Python and package versions, whether Lava imports, whether lava-loihi (Loihi 2
    hardware) is installed, and the OpenMP thread count its processes run with."""
    from qsnn_lava.converters.lava_env import import_lava

    from qsnn_lava.io import installed_versions

    versions = installed_versions(("qsnn-lava", "lava-nc", "lava-dl", "numpy", "torch", "h5py"))
    t0 = time.perf_counter()
    import_lava()
    import_s = time.perf_counter() - t0
    try:
        from lava.utils import loihi
        loihi_installed = bool(loihi.is_installed())
    except ImportError:
        loihi_installed = False
    return {"executable": sys.executable, "versions": versions, "loihi_installed": loihi_installed,
            "lava_import_s": import_s, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


# -- the request ----------------------------------------------------------------------------------------

class Progress:
    """The progress channel: one ``progress DONE TOTAL`` line per call on the inherited pipe ``fd``."""

    def __init__(self, fd):
        self.out = os.fdopen(fd, "w", buffering=1) if fd is not None else None

    def __call__(self, done: int, total: int) -> None:
        if self.out is not None:
            self.out.write(f"progress {int(done)} {int(total)}\n")

    def close(self) -> None:
        """Close the progress pipe (nothing to do without one)."""
        if self.out is not None:
            self.out.close()


def _inside(workdir: Path, name) -> Path:
    """A file named by the request, which must lie in the request folder."""
    path = (workdir / str(name)).resolve()
    if path.parent != workdir.resolve():
        raise QsnnError(f"request names '{name}', which is not a file of the request folder {workdir}")
    return path


def _load_input(workdir: Path, req: dict) -> np.ndarray:
    return np.load(_inside(workdir, req["input"]), allow_pickle=False)


def _load_net(workdir: Path, req: dict):
    from qsnn_lava.ir import Network

    return Network.load(_inside(workdir, req["ir"]), validate=False)  # the client saved it validated


def _save_arrays(workdir: Path, arrays: dict) -> list:
    for name, a in arrays.items():
        np.save(workdir / f"{name}.npy", np.ascontiguousarray(a), allow_pickle=False)
    return list(arrays)


def handle(workdir, req: dict, progress=None) -> dict:
    """Carry out one request whose files lie in ``workdir``; the result.json content (arrays saved)."""
    workdir = Path(workdir)
    op = req.get("op")
    if op == "probe":
        return probe()
    if op == "run":
        net = _load_net(workdir, req)
        spikes, info = run_in_process(net, _load_input(workdir, req), req.get("chunk_samples", 64), progress)
        arrays = {f"spikes_{i}": s for i, s in enumerate(spikes)}
        arrays.update({f"voltage_{i}": v for i, v in info.pop("voltages").items()})
        return {"arrays": _save_arrays(workdir, arrays), "layer_names": [layer.name for layer in net.layers],
                "info": info}
    if op == "trace":
        u, v = trace_in_process(_load_net(workdir, req), _load_input(workdir, req), int(req["layer_index"]))
        return {"arrays": _save_arrays(workdir, {"u": u, "v": v}), "info": {}}
    if op == "run_netx":
        out = run_netx_in_process(_inside(workdir, req["netx"]), _load_input(workdir, req), int(req["timesteps"]),
                                  int(req["n_layers"]), bool(req.get("hw", False)), req.get("input_shape"), progress)
        return {"arrays": _save_arrays(workdir, {"out": out}), "info": {}}
    raise QsnnError(f"unknown worker op '{op}' (known: {', '.join(OPS)})")


def _write_result(workdir: Path, result: dict) -> None:
    tmp = workdir / "result.json.part"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, workdir / "result.json")  # whole or absent: a killed worker leaves no half result


_CLEAN_UP = threading.Lock()


def _clean_up_after_client(workdir: Path, shm_before: set) -> None:
    """The client that started this worker is gone without cleaning up (killed with SIGKILL, say): do its
    clean-up here. Kill the rest of this process group (Lava's processes), remove the shared memory they
    leave and the request folder, and end this process. Lava must not outlive the run it serves."""
    from qsnn_lava.deployment.backends.lava import group_members, remove_orphan_shm

    _CLEAN_UP.acquire()  # once, by whichever thread comes first; the process ends below
    me, group = os.getpid(), os.getpgrp()
    end = time.monotonic() + 10
    while time.monotonic() < end:
        others = [pid for pid in group_members(group) if pid != me]
        if not others:
            break
        for pid in others:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    remove_orphan_shm(shm_before, exclude_pid=me)  # this process's own mappings end with it
    shutil.rmtree(workdir, ignore_errors=True)  # the request folder our (dead) client made for this run
    os._exit(1)


def _watch_client(client_pid: int, workdir: Path, shm_before: set) -> None:
    while os.getppid() == client_pid:
        time.sleep(0.5)
    _clean_up_after_client(workdir, shm_before)


def main(argv=None) -> int:
    """Serve the request in folder REQUEST_DIR, ``argv = [REQUEST_DIR]`` (default ``sys.argv[1:]``), and write
    its ``result.json``.

    A QsnnError is written as {"error": message}; both outcomes return 0. A wrong argument count prints the
    usage and returns 2; any other exception propagates (a bug: traceback, exit status 1). Started in a
    session of its own, it watches the client: should the client die, the worker kills Lava's processes,
    removes their shared memory and the request folder, and ends."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m qsnn_lava.deployment.lava_worker REQUEST_DIR", file=sys.stderr)
        return 2
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # the client blocks them to start us
    workdir = Path(argv[0])
    req = json.loads((workdir / "request.json").read_text())
    client = None
    if os.getpgrp() == os.getpid():  # started by the client in a session of our own: the group is ours
        from qsnn_lava.deployment.backends.lava import shm_segments

        client, shm_before = int(req.get("client_pid", os.getppid())), shm_segments()
        threading.Thread(target=_watch_client, args=(client, workdir, shm_before), daemon=True).start()
    progress = Progress(req.get("progress_fd"))
    try:
        try:
            result = handle(workdir, req, progress)
        except QsnnError as e:
            result = {"error": str(e)}
        _write_result(workdir, result)
    finally:
        if client is not None and os.getppid() != client:  # the run failed because the client is gone
            _clean_up_after_client(workdir, shm_before)
        with contextlib.suppress(OSError):
            progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
