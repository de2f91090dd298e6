"""Where training and evaluation run: the device (``--device``) and several processes with torch's
DistributedDataParallel, launched by ``torchrun`` (or ``qsnn-lava train --nproc N``, which starts torchrun).

One training loop serves one process and many (``training.train`` takes a ``Context``): every process draws
the same global permutation of the training set from the same seeded generator and takes its contiguous
share of each global batch (``Context.shard``), so N processes with B/N samples each run the same steps as
one process with batch B. The loss of a share is weighted by its size (``Context.weight``) so that DDP's
gradient average is the mean over the global batch, also for a last batch that does not split evenly.

What each process holds and how it is kept identical:
  * weights, Adam's moments, the cosine schedule: DDP broadcasts rank 0's weights at the start and averages
    the gradients, so every optimizer step is the same everywhere;
  * folded BatchNorm: its batch statistics are those of the global batch (``models.batch_moments`` with
    ``Context.all_sum``), so the folded weights, biases and running statistics are the same everywhere;
  * sigmoid-sum quantizer: beta is a parameter (averaged like the weights), the temperature a buffer set from
    the epoch; ReScaW's gamma is computed from the weights; the MFP neuron holds no state.
Only rank 0 writes checkpoints (the same format as one process; any number of processes can resume one).

The integer arithmetic is device-agnostic (``dynamics``): on a GPU the integer path accumulates in a float
type the static bound proves exact, and convolves as unfold + matmul. Evaluation splits the test set into
contiguous shares and gathers every layer's spikes back in order (``Context.gather``): the same Record as
one process, so the same counts; ``verify`` splits its samples the same way (``Context.gather_record``).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import QsnnError, proc_stat, signals_deferred
from .record import Record

DEVICES = "auto, cpu, cuda or cuda:N"
STOP_GRACE_S = 5.0  # SIGTERM, then this long, then SIGKILL for what still runs


def resolve_device(spec=None) -> torch.device:
    """The torch device ``spec`` names: "auto" (or None) a GPU when torch sees one (the current CUDA device),
    else the CPU; "cpu"; "cuda" (the current CUDA device); "cuda:N". QsnnError for an unknown name or a
    GPU that is not there.

    Example:
        >>> from qsnn_lava.distributed import resolve_device
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    text = "auto" if spec is None else str(spec).strip()
    match = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", text)
    if match is None:
        raise QsnnError(f"device '{spec}' is not known; give {DEVICES}")
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise QsnnError(f"device '{text}': torch {torch.__version__} sees no CUDA GPU here; use --device cpu "
                        "(or auto, which picks a GPU only when there is one)")
    index = torch.cuda.current_device() if match.group(1) is None else int(match.group(1))
    if index >= torch.cuda.device_count():
        raise QsnnError(f"device '{text}': there are {torch.cuda.device_count()} GPUs (cuda:0 .. "
                        f"cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def to_cpu(obj):
    """``obj`` (tensors inside dicts, lists and tuples) with every tensor moved to the CPU: checkpoints hold
    CPU tensors whatever device trained them, so they load anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def shard_slice(n: int, rank: int, world: int) -> slice:
    """The contiguous share of ``n`` items that process ``rank`` of ``world`` takes: the first ``n % world``
    processes one more than the others (so the shares, in rank order, are the items in order).

    Example:
        >>> from qsnn_lava.distributed import shard_slice
        >>> [shard_slice(5, r, 2) for r in range(2)]
        [slice(0, 3, None), slice(3, 5, None)]
    """
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return slice(lo, lo + base + (rank < extra))


@dataclass
class Context:
    """One process of a torchrun group: its ``rank`` of ``world``, its ``local_rank`` on this machine, the
    ``device`` it computes on and the process-group ``backend`` (gloo on CPUs, nccl on GPUs)."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (``shard_slice``)."""
        return shard_slice(n, self.rank, self.world)

    def weight(self, share: int, total: int) -> float:
        """The factor on a share's mean loss (``share`` of ``total`` samples) that makes DDP's gradient
        average the mean over all ``total`` samples: share * world / total (1.0 in one process)."""
        return share * self.world / total

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over all processes (a new tensor on ``t``'s device; the group's device for the
        exchange)."""
        import torch.distributed as dist

        out = t.detach().to(self._comm_device(), copy=True)
        dist.all_reduce(out)
        return out.to(t.device)

    def sum_numbers(self, *values: float) -> list[float]:
        """Python numbers summed over all processes (float64: counts stay exact below 2^53)."""
        return self.all_sum(torch.tensor(values, dtype=torch.float64)).tolist()

    def gather(self, arrays: list) -> list:
        """Each process's list of arrays [T, n_i, ...] (its share, along axis 1) -> the full arrays in rank
        order, on every process."""
        import torch.distributed as dist

        parts = [None] * self.world
        dist.all_gather_object(parts, [np.asarray(a) for a in arrays])
        return [np.concatenate(per_rank, axis=1) for per_rank in zip(*parts)]

    def gather_record(self, rec: Record) -> Record:
        """A backend's Record of this process's share of the samples -> the Record of all samples, on every
        process: spikes (and readout voltages) gathered in rank order, run-time overflow counts (``info["overflow"]``) summed,
        ``info["seconds"]`` the slowest process's."""
        import torch.distributed as dist

        infos = [None] * self.world
        dist.all_gather_object(infos, rec.info)
        info = dict(rec.info, seconds=max(i.get("seconds", 0.0) for i in infos))
        if "overflow" in rec.info:
            info["overflow"] = {layer: {k: sum(i["overflow"][layer][k] for i in infos) for k in counts}
                                for layer, counts in rec.info["overflow"].items()}
        volts = dict(zip(rec.voltages, self.gather(list(rec.voltages.values()))))  # a readout layer's voltage
        return Record(rec.backend, rec.layer_names, self.gather(rec.spikes), info, volts)

    def wrap(self, model: torch.nn.Module):
        """``model`` in DistributedDataParallel (its forward and backward average the gradients), with every
        folded BatchNorm summing its batch statistics over all processes (``models.batch_moments``)."""
        from torch.nn.parallel import DistributedDataParallel

        for m in model.modules():
            if hasattr(m, "sum_across"):
                m.sum_across = self.all_sum
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def release(self, model: torch.nn.Module) -> None:
        """Undo ``wrap``'s BatchNorm hook: the model computes its statistics alone again."""
        for m in model.modules():
            if hasattr(m, "sum_across"):
                m.sum_across = None

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (``WORLD_SIZE`` and ``RANK`` are set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def start(device=None) -> Context | None:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) and return this process's Context; None when not started by torchrun. ``device``: "auto"
    takes the GPU of the local rank when there are GPUs, else the CPU; "cuda" the GPU of the local rank;
    "cpu" the CPU (gloo). A fixed "cuda:N" is refused for several processes (each takes its own GPU)."""
    if not under_torchrun():
        return None
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    text = "auto" if device is None else str(device).strip()
    check_launch(text, world if re.fullmatch(r"cuda:\d+", text) else 1)
    dev = resolve_device(text)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise QsnnError(f"{world} processes on this machine but {torch.cuda.device_count()} GPUs: start at most "
                            "one process per GPU (--nproc), or use --device cpu")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://")
    return Context(rank, world, local, dev, backend)


def stop(ctx: Context | None) -> None:
    """Leave the process group ``start`` joined (nothing for None)."""
    import torch.distributed as dist

    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------- launching torchrun
def torchrun_command(argv: list, nproc: int) -> list:
    """The command line that runs ``python -m qsnn_lava ARGV`` in ``nproc`` processes on this machine:
    ``python -m torch.distributed.run --standalone --nproc_per_node N -m qsnn_lava ARGV`` (torchrun;
    --standalone picks a free port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", "qsnn_lava", *map(str, argv)]


def check_launch(device, nproc: int) -> None:
    """Refuse, before torchrun starts anything, what every one of ``nproc`` processes would refuse: an unknown
    or missing device, a fixed "cuda:N" for several processes, more processes than GPUs."""
    text = "auto" if device is None else str(device).strip()
    if re.fullmatch(r"cuda:\d+", text) and nproc > 1:
        raise QsnnError(f"device '{text}' with {nproc} processes: give --device cuda (each process takes the GPU "
                        "of its local rank) or cpu")
    if resolve_device(text).type == "cuda" and nproc > torch.cuda.device_count():
        raise QsnnError(f"--nproc {nproc} but {torch.cuda.device_count()} GPUs: start at most one process per GPU, "
                        "or use --device cpu")


def launch(argv: list, nproc: int) -> int:
    """Run ``qsnn_lava ARGV`` in ``nproc`` processes through torchrun and wait; returns torchrun's exit
    status. On Ctrl-C (KeyboardInterrupt), SIGTERM (``errors.Terminated``) or any other exception while
    waiting, torchrun and every worker it started (torchrun puts each in a session of its own, so they are
    found through /proc) get SIGTERM, then SIGKILL after ``STOP_GRACE_S`` seconds, before the exception
    goes on."""
    with signals_deferred():
        proc = subprocess.Popen(torchrun_command(argv, nproc), start_new_session=True)
    seen: set = set()
    try:
        while proc.poll() is None:
            seen |= _descendants(proc.pid)
            time.sleep(0.2)
        return proc.returncode
    finally:
        if proc.poll() is None:
            _stop_tree(proc, seen)


def _stop_tree(proc: subprocess.Popen, seen: set) -> None:
    """SIGTERM to ``proc`` and its descendants (those seen before and now), SIGKILL after the grace time to
    what still lives, and wait until none does."""
    with signals_deferred():
        seen = seen | _descendants(proc.pid)
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc.send_signal(sig)
            for pid, start_time in seen:
                if (st := _stat(pid)) is not None and st[1] == start_time:  # not a reused pid
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                seen |= _descendants(proc.pid)
                if proc.poll() is not None and not _alive(seen):
                    return
                time.sleep(0.05)


def _descendants(root: int) -> set:
    """(pid, start time) of every live descendant of ``root`` (from /proc; empty where there is none)."""
    table = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if d.isdigit():
            st = _stat(int(d))
            if st:
                table[int(d)] = st
    out, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier and (pid, table[pid][1]) not in out}
        out |= {(pid, table[pid][1]) for pid in frontier}
    return out


def _stat(pid: int):
    """(parent pid, start time) of a live process, None when it is gone or a zombie."""
    fields = proc_stat(pid)
    return None if fields is None or fields[0] in "ZX" else (int(fields[1]), int(fields[19]))


def _alive(procs: set) -> bool:
    return any((st := _stat(pid)) is not None and st[1] == start for pid, start in procs)

