"""Files: atomic writes, and checkpoints as plain dicts loaded with ``weights_only=True``."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .errors import QsnnError

CHECKPOINT_FORMAT = "qsnn-lava-checkpoint"
CHECKPOINT_VERSION = 1


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise QsnnError(f"cannot write '{path}': directory '{parent}' does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj) -> None:
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
    """Load and check a checkpoint; every failure is a QsnnError naming the file and the fix."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise QsnnError(f"checkpoint '{path}' not found; create one with `qsnn-lava train --out {path}`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise QsnnError(f"'{path}' is not a readable checkpoint ({reason[:120]}); "
                        "re-create it with `qsnn-lava train`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise QsnnError(f"'{path}' is not a qsnn-lava checkpoint (no format='{CHECKPOINT_FORMAT}'); "
                        "re-create it with `qsnn-lava train`")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise QsnnError(f"'{path}' has checkpoint version {ckpt.get('version')}; this qsnn-lava reads "
                        f"version {CHECKPOINT_VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise QsnnError(f"'{path}': checkpoint has no '{key}' dict; re-create it with `qsnn-lava train`")
    return ckpt


def is_hdf5(path) -> bool:
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
