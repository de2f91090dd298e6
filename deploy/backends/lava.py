"""Run an IR in Lava on CPU with the bit-accurate models: ``Loihi2SimCfg(select_tag='fixed_pt')``.

All samples go through one graph in one run (see converters.lava_graph for the reset/delay scheme),
in chunks so a progress bar can advance. Processes are stopped on success, on error and on Ctrl-C.
"""
from __future__ import annotations

import time

import numpy as np

from qsnn_lava.converters import lava_graph
from qsnn_lava.errors import QsnnError
from qsnn_lava.ir import Network
from qsnn_lava.record import Record


def lava_available() -> bool:
    try:
        import lava.magma  # noqa: F401
    except ImportError:
        return False
    return True


def import_lava() -> None:
    """Import Lava's runtime, which calls ``multiprocessing.set_start_method('fork')`` without force.

    That raises when anything (tqdm's lock, for one) already fixed the start method. When the
    method in force is already 'fork' Lava's wish is met, so the import is repeated with the call
    forced; any other method is a real conflict and is reported.
    """
    import multiprocessing as mp

    if not lava_available():
        raise QsnnError("the lava backend needs lava-nc 0.10.0: pip install 'qsnn-lava[lava]' (Python 3.10)")
    try:
        import lava.magma.runtime.runtime  # noqa: F401
    except RuntimeError:
        if mp.get_start_method() != "fork":
            raise QsnnError(f"Lava needs the 'fork' multiprocessing start method, but "
                            f"'{mp.get_start_method()}' is already set in this process") from None
        original = mp.set_start_method
        mp.set_start_method = lambda method, force=False: original(method, force=True)
        try:
            import lava.magma.runtime.runtime  # noqa: F401,F811
        finally:
            mp.set_start_method = original


def run(net: Network, spikes: np.ndarray, progress: bool = False, chunk_samples: int = 64,
        on_chunk=None, timeout_s: float | None = None) -> Record:
    """Run input spikes [T, N, n_in] through ``net`` in one Lava graph; every layer's spikes as a Record.

    ``on_chunk(steps_done, steps_total)`` is called after each chunk (a hook for progress and tests).
    ``timeout_s`` bounds the wall time, checked after each chunk; on expiry the processes are stopped
    and a QsnnError says how far the run got.
    """
    import_lava()
    from lava.magma.core.run_conditions import RunSteps

    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[0] != net.timesteps or spikes.shape[2] != net.n_in:
        raise QsnnError(f"input spikes have shape {spikes.shape}; this network takes "
                        f"[T={net.timesteps}, N, {net.n_in}]")
    n_samples = spikes.shape[1]
    t0 = time.perf_counter()
    graph = lava_graph.build(net, spikes)
    t_build = time.perf_counter() - t0
    cfg = lava_graph.run_config(net)
    raw = [np.zeros((sink.in_port.shape[0], graph.steps), np.uint8) for sink in graph.sinks]
    chunk = max(1, chunk_samples) * net.timesteps
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=graph.steps, desc="lava", unit="step", leave=False)
    runner = graph.lifs[-1]
    try:
        t1 = time.perf_counter()
        done = 0
        while done < graph.steps:
            k = min(chunk, graph.steps - done)
            runner.run(condition=RunSteps(num_steps=k, blocking=False), run_cfg=cfg)
            for step in range(done, done + k):  # drain all extractors step by step: none may fill up
                for buf, sink in zip(raw, graph.sinks):
                    buf[:, step] = sink.receive()
            runner.wait()
            done += k
            if bar:
                bar.update(k)
            if on_chunk:
                on_chunk(done, graph.steps)
            if timeout_s is not None and done < graph.steps and time.perf_counter() - t0 > timeout_s:
                raise QsnnError(f"Lava run stopped after {timeout_s} s at step {done} of {graph.steps}; "
                                "raise the timeout or verify fewer samples")
        t_run = time.perf_counter() - t1
    finally:
        if bar:
            bar.close()
        runner.stop()  # a no-op when no runtime was created
    spikes_out = [lava_graph.unpack(r, net.timesteps, d, n_samples) for d, r in zip(graph.depths, raw)]
    return Record("lava", [layer.name for layer in net.layers], spikes_out,
                  info={"seconds": time.perf_counter() - t0, "build_s": t_build, "run_s": t_run,
                        "steps": graph.steps})


def trace(net: Network, spikes: np.ndarray, layer_index: int):
    """u and v [T, n] of one layer for one sample (spikes [T, 1, n_in]) as Lava computes them.

    Runs that sample alone with Monitors on the layer's u and v (few values, so Var reads are cheap)
    and undoes the pipeline delay: zero-delay step tau is Lava step tau + depth + 1.
    """
    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.monitor.process import Monitor

    spikes = np.asarray(spikes).reshape(net.timesteps, 1, net.n_in)
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
