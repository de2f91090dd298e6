"""Processes and shared-memory segments as /proc and /dev/shm show them (tests of Lava supervision).

Written independently of deploy.backends.lava's own bookkeeping, so that the tests check it."""
import os
import time


def _stat(pid):
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _resource_tracker(pid) -> bool:
    """Whether ``pid`` is multiprocessing's resource tracker: a helper that a process using spawned workers
    (data.bin_samples) keeps for its own lifetime and that ends with it; not a process left running."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.resource_tracker" in f.read()
    except OSError:
        return False


def descendants(root: int) -> dict:
    """Live descendants of process ``root``: {pid: start time} (the start time tells a reused pid apart),
    multiprocessing's resource tracker left out (``_resource_tracker``)."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st and st[0] not in "ZX" and not _resource_tracker(d):
                table[int(d)] = st
    out, frontier = {}, {root}
    while frontier:
        frontier = {pid for pid, st in table.items() if st[1] in frontier and pid not in out}
        out.update({pid: table[pid][2] for pid in frontier})
    return out


def still_alive(procs: dict) -> list:
    """The processes of ``procs`` ({pid: start time}) that still run (zombies count as dead)."""
    out = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st and st[2] == start and st[0] not in "ZX":
            out.append(pid)
    return out


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition()`` until it returns something true; AssertionError naming ``what`` on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = condition()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shm() -> set:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def shm_mapped() -> set:
    """Names of /dev/shm segments mapped by some living process."""
    names = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/maps") as f:
                    for line in f:
                        if "/dev/shm/" in line:
                            names.add(line.split("/dev/shm/", 1)[1].split()[0])
            except OSError:
                pass
    return names


def orphaned_shm(candidates: set) -> set:
    """Those of ``candidates`` that still exist in /dev/shm while no living process maps them (left
    behind). Segments of other programs running meanwhile are mapped, or already gone."""
    return (candidates & shm()) - shm_mapped()


def slow_read(path):
    """An N-MNIST reader that takes its time (a slow disk): lets a test signal a parallel binning mid-way.
    Module level, so that spawned worker processes can import it."""
    from qsnn_lava.events import read_nmnist_bin

    time.sleep(0.2)
    return read_nmnist_bin(path)
