"""Files: atomic writes, and checkpoints as plain dicts loaded with ``weights_only=True``."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import QsnnError

CHECKPOINT_FORMAT = "qsnn-lava-checkpoint"
CHECKPOINT_VERSION = 1


def _modes() -> tuple[int, int]:
    """File and folder modes that honour the user's umask (mkstemp/mkdtemp would give 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name one file (or folder), links and relative paths resolved."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, inputs=(), kind: str = "file", replaceable=None, names=()) -> Path:
    """Refuse, before any work is done, an output path this command could not or must not write.

    ``kind`` is "file" (replaced if it exists: the user named it) or "dir". A "dir" output that exists
    is replaced only when ``replaceable(path)`` says this program wrote it (e.g. a bundle with its
    manifest); with ``names`` instead, the files of those names are written into it, and any of them
    that exists already must have been written by qsnn-lava (listed in the folder's ``.qsnn-lava``
    record). An output that is one of ``inputs`` is refused. Returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "m.pt").write_bytes(b"x")
        1
        >>> check_output(d / "m.ir.h5", inputs=[d / "m.pt"]).name
        'm.ir.h5'
        >>> check_output(d / "m.pt", inputs=[d / "m.pt"])
        Traceback (most recent call last):
        ...
        qsnn_lava.errors.QsnnError: output '.../m.pt' is also an input of this command; write the output to another path
    """
    path = Path(path)
    parent = _parent(path)
    for src in inputs:
        if src is not None and same_file(path, src):
            raise QsnnError(f"output '{path}' is also an input of this command; write the output to another path")
    if not parent.is_dir():
        raise QsnnError(f"cannot write '{path}': folder '{parent}' does not exist; create it or choose another path")
    _probe(parent, path)
    if kind == "file":
        if path.is_dir():
            raise QsnnError(f"cannot write '{path}': it is a folder; give a file path")
        if path.exists() and not path.is_file():
            raise QsnnError(f"cannot write '{path}': it exists and is not a regular file; choose another path")
        return path
    if path.exists() and not path.is_dir():
        raise QsnnError(f"cannot write folder '{path}': a file of that name exists; choose another path")
    if path.is_dir():
        if replaceable is not None:
            if any(path.iterdir()) and not replaceable(path):
                raise QsnnError(f"'{path}' exists and was not written by this command; it is left untouched: "
                                "choose a new folder (or remove it yourself)")
        else:
            _probe(path, path)
            ours = set(_written(path))
            clash = [n for n in names if (path / n).exists() and n not in ours]
            if clash:
                raise QsnnError(f"'{path / clash[0]}' exists and was not written by qsnn-lava; it is left "
                                "untouched: choose a new --out folder")
    return path


def _probe(folder: Path, path: Path) -> None:
    """Create and remove a file of our own in ``folder``: the honest test of writability (permission bits
    say nothing for root, nor for read-only or full file systems)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".qsnn-lava-probe.", dir=folder)
    except OSError as e:
        raise QsnnError(f"cannot write '{path}': folder '{folder}' is not writable ({e.strerror}); choose another "
                        "output path") from None
    os.close(fd)
    os.unlink(probe)  # the probe file we just created


RECORD = ".qsnn-lava"  # in a folder qsnn-lava writes into: the names of the files it wrote there


def _written(folder: Path) -> list:
    try:
        return json.loads((folder / RECORD).read_text()).get("written", [])
    except (OSError, ValueError, AttributeError):
        return []


def _temp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_files(paths):
    """Yield one temporary path beside each of ``paths``; when the block succeeds, rename each onto its
    target (with the user's normal file mode), else remove them all: every file is written, or none.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_files([d / "a.txt", d / "b.txt"]) as (a, b):
        ...     _ = a.write_text("A"), b.write_text("B")
        >>> sorted(p.name for p in d.iterdir())
        ['a.txt', 'b.txt']
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if not _parent(p).is_dir():
            raise QsnnError(f"cannot write '{p}': folder '{_parent(p)}' does not exist")
    tmps = []
    try:
        for p in paths:
            tmps.append(_temp_beside(p))
        yield tmps
        mode = _modes()[0]
        for tmp, p in zip(tmps, paths):
            os.chmod(tmp, mode)
            os.replace(tmp, p)
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()  # our own temporary name, never renamed into place


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    with atomic_files([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_dir(path, replaceable):
    """Yield a fresh temporary folder beside ``path``; when the block succeeds it becomes ``path``.

    An existing ``path`` is replaced only if ``replaceable(path)`` (it was written by this program);
    otherwise QsnnError, before anything is built (call ``check_output(path, kind="dir", ...)`` before
    long work too). The old folder is removed only after the new one is in place.
    """
    path = Path(path)
    check_output(path, kind="dir", replaceable=replaceable)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=_parent(path)))
    old = None
    try:
        yield tmp
        os.chmod(tmp, _modes()[1])
        check_output(path, kind="dir", replaceable=replaceable)  # nothing else appeared meanwhile
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=_parent(path)))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)  # our own temporary folder
        if old is not None:
            shutil.rmtree(old)  # the previous output, which replaceable() proved we wrote


@contextlib.contextmanager
def output_dir(path, names):
    """Write the files ``names`` into folder ``path``, all or none: yields {name: temporary path}.

    A missing folder is created only when the block succeeds; in an existing folder only files of these
    names are written (``check_output`` refuses names it did not write before), and the folder's
    ``.qsnn-lava`` record lists them, so a later run may replace them.
    """
    path = Path(path)
    check_output(path, kind="dir", names=names)
    created = not path.exists()
    if created:
        stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=_parent(path)))
        targets = [stage / n for n in names]
    else:
        stage, targets = None, [path / n for n in names]
    try:
        with atomic_files(targets + [targets[0].parent / RECORD]) as tmps:
            yield dict(zip(names, tmps))
            written = sorted(set(names) | (set() if created else set(_written(path))))
            tmps[-1].write_text(json.dumps({"written": written}) + "\n")
        if created:
            os.chmod(stage, _modes()[1])
            os.replace(stage, path)
            stage = None
    finally:
        if stage is not None and stage.exists():
            shutil.rmtree(stage)  # our own staging folder


def save_figure(fig, path, dpi: int = 110):
    """Save a matplotlib figure as PNG atomically and close it; with ``path`` None return the figure
    open instead (a notebook shows it)."""
    import matplotlib.pyplot as plt

    if path is None:
        return fig
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def write_json(path, obj) -> None:
    """Write ``obj`` to ``path`` as JSON (indent 2, sorted keys, final newline), atomically (``atomic_write``)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path, config: dict, state_dict: dict, meta: dict | None = None,
                    training: dict | None = None) -> None:
    """Write a checkpoint atomically; ``training`` (optimizer, schedule, RNG, history, epoch) makes it
    resumable with ``qsnn-lava train --resume``."""
    import torch

    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": dict(config),
            "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": dict(meta or {})}
    if training is not None:
        ckpt["training"] = training
    with atomic_write(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path) -> dict:
    """Load and check a checkpoint; every failure is a QsnnError naming the file and the fix.

    The file is untrusted: it is read with ``weights_only=True``, must be a dict of our format whose
    ``state_dict`` maps names to dense tensors, and no float tensor may hold NaN or Inf (a corrupt or
    diverged checkpoint would otherwise convert to nonsense integers). The config is checked by
    ``models.check_config`` and against the tensors by ``models.check_state_shapes`` when a model is built.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    recreate = "re-create it with `qsnn-lava train`"
    if not path.exists():
        raise QsnnError(f"checkpoint '{path}' not found; create one with `qsnn-lava train --out {path}`")
    if not path.is_file():
        raise QsnnError(f"'{path}' is not a qsnn-lava checkpoint (it is a folder, not a file); {recreate}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # never pass on torch's advice to load unsafely
        safe_refused = "weights only" in str(e).lower() and zipfile.is_zipfile(path)
        reason = "it holds Python objects that a safe load refuses" if safe_refused else "not a torch save"
        raise QsnnError(f"'{path}' is not a qsnn-lava checkpoint ({reason}); {recreate}") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, MemoryError,
            KeyError, AttributeError, TypeError, IndexError, OverflowError) as e:  # torch on foreign bytes
        raise QsnnError(f"'{path}' is not a qsnn-lava checkpoint (unreadable as a torch file: "
                        f"{e.__class__.__name__}); {recreate}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise QsnnError(f"'{path}' is not a qsnn-lava checkpoint (no format='{CHECKPOINT_FORMAT}'); {recreate}")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise QsnnError(f"'{path}' has checkpoint version {str(ckpt.get('version'))[:20]}; this qsnn-lava reads "
                        f"version {CHECKPOINT_VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise QsnnError(f"'{path}': checkpoint has no '{key}' dict; {recreate}")
    if not isinstance(ckpt.get("meta", {}), dict):
        raise QsnnError(f"'{path}': the checkpoint's 'meta' must be a dict; {recreate}")
    for name, t in ckpt["state_dict"].items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise QsnnError(f"'{path}': state_dict entry {str(name)[:60]!r} is not a dense tensor; the checkpoint "
                            f"is corrupt, {recreate}")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise QsnnError(f"'{path}': tensor '{name}' holds NaN/Inf; the checkpoint is corrupt, re-train")
    return ckpt


def open_hdf5(path, what: str, fix: str):
    """Open an untrusted file as HDF5 for reading (an ``h5py.File``), or refuse in one line: missing, a
    folder or device, or not HDF5. ``what`` names the kind ("netx file"), ``fix`` says what to pass."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise QsnnError(f"{what} '{path}' not found" if not path.exists() else
                        f"'{path}' is not a {what} (it is a folder or a device); {fix}")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise QsnnError(f"'{path}' is not an HDF5 file; {fix}") from None


def installed_versions(names) -> dict:
    """{"python": this interpreter's version, name: the installed version of each distribution or None}."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def is_hdf5(path) -> bool:
    """True when the file at ``path`` starts with the 8-byte HDF5 signature (OSError if it cannot be opened)."""
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def read_json_object(path, what: str) -> dict:
    """A JSON object from a user's file; QsnnError naming ``what`` and the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise QsnnError(f"{what} '{path}' not found")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QsnnError(f"{what} '{path}' is not valid JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(data, dict):
        raise QsnnError(f"{what} '{path}' must be a JSON object")
    return data
