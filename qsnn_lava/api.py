"""The public API: every command of ``qsnn-lava`` as a function that returns objects.

These functions never print (progress bars only with ``progress=True``) and never exit; bad input raises
``QsnnError`` with one line naming the problem and the fix. The CLI (``qsnn_lava.cli``) only parses
arguments, calls these, and prints what they return. This module is the roof of the house: it may import
the core, ``qsnn_lava.converters`` and ``qsnn_lava.deployment``; nothing below imports it.

Arrays are time-major like Lava's and the backends': input spikes ``[T, N, n_in]`` (uint8 0/1), every
layer's output spikes ``[T, N, n]``. Time is zero-delay: a layer integrates at step t what its sources
emitted at step t (docs/integer-semantics.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import QsnnError, about
from .ir import Network
from .record import Record

DEFAULT_TABLES = ("loihi1", "cmos45_snn", "ann_fp32", "ann_int8", "cmos45_snn_mem", "ann_int8_mem")
MAX_INPUT_EVENTS = 1 << 31  # values in one input spike file (2 GiB as uint8)


def backend_names() -> tuple:
    """Every backend a network can run on: the trained torch model in eval mode, and the IR backends.

    Example:
        >>> import qsnn_lava as ql
        >>> ql.backend_names()
        ('torch', 'reference', 'lava')
    """
    from .deployment.backends import BACKENDS

    return ("torch", *BACKENDS)


# ---------------------------------------------------------------- checks of arguments
def _positive_int(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise QsnnError(f"{name} = {value!r} must be a whole number >= 1")
    return int(value)


def _positive_float(value, name: str):
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise QsnnError(f"{name} = {value!r} must be a number") from None
    if not math.isfinite(v) or v <= 0:
        raise QsnnError(f"{name} = {value!r} must be a finite number > 0")
    return v


# ---------------------------------------------------------------- files
def _is_model(obj) -> bool:
    from .models import QSNN

    return isinstance(obj, QSNN)


def load(path, timesteps: int | None = None, validate: bool = True):
    """What a file holds: a checkpoint -> a model (QSNN, eval mode, with ``.config`` and ``.meta``); an IR
    file, a bundle folder, or a lava-dl netx file (give ``timesteps``: netx files carry none) -> a Network.

    Every file is validated before anything is allocated from its declared sizes; ``validate=False``
    leaves Loihi 2's register widths to the design-rule check (``deploy``).

    Example:
        >>> import qsnn_lava as ql, numpy as np, tempfile, os
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense(np.array([[1, 1]])), ql.LIF(1, vth=1, du=4095, dv=0))], 4)
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.ir.h5")
        >>> ql.save(net, path)
        >>> ql.load(path).layers[0].neuron.vth
        1
    """
    from .deployment.bundle import is_bundle
    from .io import is_hdf5

    p = Path(path)
    if is_bundle(p):
        return _bundle_network(p, validate)
    if p.is_dir():
        raise QsnnError(f"'{path}' is a folder but not a qsnn-lava bundle (no manifest.json); pass a checkpoint, "
                        "an IR file or a bundle")
    if not p.exists():
        raise QsnnError(f"'{path}' not found; pass a checkpoint (qsnn-lava train), an IR (qsnn-lava convert) "
                        "or a bundle (qsnn-lava deploy)")
    if is_hdf5(p):
        if _is_netx(p):
            if timesteps is None:
                raise QsnnError(f"'{path}' is a lava-dl netx file, which carries no time steps; pass timesteps "
                                "(--timesteps)")
            return import_netx(p, timesteps)
        return Network.load(p, validate=validate)
    if p.suffix.lower() in (".h5", ".hdf5", ".net"):
        return Network.load(p, validate=validate)  # says: not an HDF5 file
    from .converters.checkpoint import load_model

    model, ckpt = load_model(p)
    model.meta = dict(ckpt.get("meta", {}))
    return model


def _is_netx(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "format" not in f.attrs and "layer" in f
    except OSError:
        return False


def _bundle_network(path: Path, validate: bool = True) -> Network:
    from .deployment.bundle import load_manifest

    load_manifest(path)
    return Network.load(path / "model.ir.h5", validate=validate)


def save(obj, path, inputs=()) -> None:
    """Write a model as a checkpoint (config, weights, ``.meta``) or a Network as an IR file, atomically
    (temporary name, then rename). ``inputs`` are files the caller read: writing onto one is refused.

    Example:
        >>> import qsnn_lava as ql, numpy as np, tempfile, os
        >>> net = ql.Network((1,), [ql.Layer("o", ql.Dense(np.array([[3]])), ql.LIF(1, vth=2, du=0, dv=0))], 2)
        >>> ql.save(net, os.path.join(tempfile.mkdtemp(), "o.ir.h5"))
    """
    from .io import check_output, save_checkpoint

    check_output(path, inputs=inputs)
    if isinstance(obj, Network):
        obj.save(path)
    elif _is_model(obj):
        save_checkpoint(path, obj.config, obj.state_dict(), getattr(obj, "meta", {}),
                        training=getattr(obj, "training_state", None))
    else:
        raise QsnnError(f"cannot save a {type(obj).__name__}; ql.save takes a model (QSNN) or a Network")


def _network(target, validate: bool = True) -> tuple[Network, object]:
    """(Network, eval model or None) from a path, a model or a Network."""
    if isinstance(target, Network):
        return target, None
    if _is_model(target):
        return convert(target, validate=validate), target
    obj = load(target, validate=validate)
    if isinstance(obj, Network):
        return obj, None
    with about(target):
        return convert(obj, validate=validate), obj


def _model(target):
    """An eval-mode model from a model or a checkpoint path."""
    if _is_model(target):
        return target
    if isinstance(target, Network):
        raise QsnnError("this needs the trained model (a checkpoint), not an IR network")
    obj = load(target)
    if not _is_model(obj):
        raise QsnnError(f"'{target}' holds an IR network; this needs the checkpoint it was converted from")
    return obj


# ---------------------------------------------------------------- data
def load_dataset(name: str = "digits", data_dir=None, timesteps: int = 8, denoise: bool = False,
                 progress: bool = False, workers: int = 1):
    """A dataset by name (``qsnn_lava.data.DATASETS``): train and test splits, input size, classes, shape.

    digits is embedded (scikit-learn); fashion-mnist reads Debian's dataset-fashion-mnist or ``data_dir``;
    event datasets read the recordings in ``data_dir`` and bin them into ``timesteps`` frames when their
    samples are first used (only the samples used are read; a progress bar with ``progress``), by
    ``workers`` processes where each sample is a file (N-MNIST, N-Caltech101, the DVS Gesture .npy copy).

    Example:
        >>> import qsnn_lava as ql
        >>> d = ql.load_dataset("digits")
        >>> d.n_in, d.n_classes, len(d.test.y)
        (64, 10, 360)
    """
    from .data import load_dataset as _load

    return _load(name, data_dir, _positive_int(timesteps, "timesteps"), denoise, progress,
                 _positive_int(workers, "workers"))


def encode(split, timesteps: int, samples: int | None = None, input_bits: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` of a split as (spikes [T, N, n_in] uint8, labels [N]): a deterministic rate
    code of the intensities (event data are binned already), or with ``input_bits`` 2..8 the direct code
    (each intensity quantised to that many bits, the same value at every step; ``Network.input_bits``).

    Example:
        >>> import qsnn_lava as ql
        >>> x, y = ql.encode(ql.load_dataset("digits").test, timesteps=8, samples=5)
        >>> x.shape, y.shape
        ((8, 5, 64), (5,))
    """
    from .data import encoded

    return encoded(split, _positive_int(timesteps, "timesteps"), _positive_int(samples, "samples", True),
                   input_bits=int(input_bits))


def _test_inputs(net: Network, dataset: str, data_dir, denoise: bool, samples, progress: bool = False):
    data = load_dataset(dataset, data_dir, net.timesteps, denoise, progress)
    if data.n_in != net.n_in:
        raise QsnnError(f"dataset '{dataset}' has {data.n_in} inputs but the network takes {net.n_in}")
    return encode(data.test, net.timesteps, samples, net.input_bits)


def read_spikes(path, net: Network) -> np.ndarray:
    """Input spikes from a .npy file, [T, ...] or [N, T, ...] with ... the network's input shape or flat,
    as the backends take them: [T, N, n_in] uint8.

    Example:
        >>> import qsnn_lava as ql, numpy as np, tempfile, os
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[1, 1]]), ql.LIF(1, vth=1, du=4095, dv=0))], 4)
        >>> path = os.path.join(tempfile.mkdtemp(), "in.npy")
        >>> np.save(path, np.ones((3, 4, 2), np.uint8))  # 3 samples [N, T, n_in]
        >>> ql.read_spikes(path, net).shape
        (4, 3, 2)
    """
    from .data import check_spike_array

    p = Path(path)
    if not p.is_file():
        raise QsnnError(f"input spikes '{path}' not found")
    try:
        x = np.load(p, allow_pickle=False, mmap_mode="r")  # the header only: nothing allocated yet
    except Exception as e:
        raise QsnnError(f"'{path}' is not a .npy array ({e.__class__.__name__}); save spikes with numpy.save") from None
    if not isinstance(x, np.ndarray) or x.size > MAX_INPUT_EVENTS:
        raise QsnnError(f"'{path}' declares {getattr(x, 'size', '?')} values; input spikes hold at most "
                        f"{MAX_INPUT_EVENTS} (split the samples over several runs)")
    x = check_spike_array(np.array(x), f"'{path}'", net.input_bits)
    shape = tuple(net.input_shape)
    if len(shape) > 1 and x.shape[-len(shape):] == shape:  # [T, C, H, W] or [N, T, C, H, W]: flatten
        x = x.reshape(*x.shape[:-len(shape)], net.n_in)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != net.timesteps or x.shape[2] != net.n_in:
        dims = ", ".join(map(str, shape))
        raise QsnnError(f"'{path}' has shape {x.shape}; expected [T={net.timesteps}, {dims}] or "
                        f"[N, {net.timesteps}, {dims}] (the input may also be flat, {net.n_in} wide)")
    if x.shape[0] == 0:
        raise QsnnError(f"'{path}' holds no samples")
    return np.ascontiguousarray(np.transpose(x, (1, 0, 2)))  # -> [T, N, n_in]


# ---------------------------------------------------------------- train, convert
def train(config: dict | None = None, *, dataset: str = "digits", data_dir=None, denoise: bool = False,
          epochs: int = 30, lr: float = 1e-2, batch_size: int = 64, seed: int = 0, out=None, resume=None,
          progress: bool = False, recipe: dict | None = None, device: str = "auto", data_workers: int = 1,
          **options):
    """Train a QSNN with quantization-aware BPTT on the exact integer dynamics it deploys with.

    ``config`` is a full model config (``qsnn_lava.models.make_config``), or give its keys as ``options``:
    arch ("mlp" | "vgg" | "resnet"), hidden (mlp widths), channels, bn, quant ("uniform" | "rescaw" |
    "sigmoid" | "ternary"), bits, first_bits, last_bits, theta (threshold in weight units), timesteps,
    neuron ("lif" | "mfp" | "qmem"), mem_bits, bias_exp_min, input ("rate" | "direct"), input_bits (direct:
    2..8), learn_threshold, readout (the output layer a non-spiking readout). ``lr`` is Adam's learning rate (cosine schedule over ``epochs``). ``recipe``:
    training options (``training.RECIPE_DEFAULTS``: weight_decay, warmup_epochs, label_smoothing, crop_pad,
    flip; docs/training.md; synops_budget, synops_weight: the activity regulariser, docs/energy.md).
    ``data_workers``: processes that read and bin an event dataset's files (``load_dataset``'s workers). With
    ``out`` a resumable checkpoint is written after every epoch and at the end; ``resume`` (a checkpoint path)
    continues an interrupted run exactly. ``device``: "auto" (a GPU when there is one), "cpu", "cuda" or
    "cuda:N". Started by torchrun (``torchrun --nproc_per_node N -m qsnn_lava train ...``), each process trains
    its share of every global batch of ``batch_size`` with DistributedDataParallel, and only rank 0 writes
    ``out`` (docs/training.md).

    Returns the model in eval mode with ``.history`` (epoch, loss, train_acc, test_acc, seconds) and
    ``.meta`` (what a checkpoint stores).

    Example:
        >>> import qsnn_lava as ql
        >>> model = ql.train(dataset="digits", epochs=1, hidden=[16], timesteps=4)
        >>> model.config["sizes"], len(model.history["test_acc"])
        ([64, 16, 10], 1)
    """
    from .distributed import resolve_device, start, stop, under_torchrun
    from .io import check_output, load_checkpoint, save_checkpoint
    from .models import make_config
    from .training import train as _train

    if not under_torchrun():
        resolve_device(device)  # a bad device is refused before any work
    epochs, batch_size = _positive_int(epochs, "epochs"), _positive_int(batch_size, "batch_size")
    lr = _positive_float(lr, "lr")
    if options.get("theta") is not None:
        options["theta"] = _positive_float(options["theta"], "theta")
    if out is not None:
        check_output(out)  # --resume may continue into its own file
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if "training" not in ckpt:
            raise QsnnError(f"'{resume}' has no training state (it was saved at the end of a run, or by an older "
                            "qsnn-lava); it can be converted, not resumed")
        cfg, meta = ckpt["config"], ckpt["meta"]
        dataset, seed = meta.get("dataset", dataset), meta.get("seed", seed)
        lr, batch_size = meta.get("lr", lr), meta.get("batch_size", batch_size)
        recipe = meta.get("recipe", recipe)
        data = load_dataset(dataset, data_dir, int(cfg["timesteps"]), denoise, progress, data_workers)
    else:
        timesteps = _positive_int(options.pop("timesteps", None) or (config or {}).get("timesteps", 8), "timesteps")
        data = load_dataset(dataset, data_dir, timesteps, denoise, progress, data_workers)
        if config is not None:
            cfg = make_config(**{**config, **{k: v for k, v in options.items() if k != "hidden"}})
        else:
            arch = options.get("arch") or "mlp"
            hidden = list(options.pop("hidden", None) or [256])
            sizes = [data.n_in, *hidden, data.n_classes] if arch == "mlp" else [data.n_in, data.n_classes]
            cfg = make_config(sizes=sizes, input_shape=data.shape if arch != "mlp" else None,
                              timesteps=timesteps, **options)
    from .training import check_recipe

    recipe = check_recipe(recipe)
    meta = {"dataset": dataset, "epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size, "recipe": recipe}
    last = {"state": ckpt.get("training") if ckpt else None}

    def checkpoint_epoch(model, state):  # an interrupted run resumes from the last finished epoch
        last["state"] = state
        if out is not None and writer:
            save_checkpoint(out, cfg, model.state_dict(), meta, training=state)

    ctx = start(device)  # under torchrun: this process's place in the group; else None
    writer = ctx is None or ctx.is_main  # only rank 0 writes files
    try:
        model, hist = _train(cfg, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                             progress=progress, resume=ckpt, on_epoch=checkpoint_epoch, recipe=recipe,
                             device=ctx.device if ctx else resolve_device(device), dist=ctx)
    finally:
        stop(ctx)
    model.history = hist
    model.meta = {**meta, "test_accuracy": hist["test_acc"][-1], "train_seconds": hist["seconds"],
                  "utilisation": model.utilisation()}
    model.training_state = last["state"]
    if out is not None and writer:
        save_checkpoint(out, cfg, model.state_dict(), model.meta, training=last["state"])
    return model


def convert(model, meta: dict | None = None, validate: bool = True) -> Network:
    """A trained model (or a checkpoint path) -> the IR Network it deploys as: exactly the integers its
    eval forward uses (no rounding of its own). What Loihi 2 cannot hold is refused, naming layer, field,
    value and limit (``validate=False`` leaves that to ``deploy``'s design-rule check).

    Example:
        >>> import qsnn_lava as ql
        >>> model = ql.train(epochs=1, hidden=[8], timesteps=2)
        >>> [layer.neuron.n for layer in ql.convert(model).layers]
        [8, 10]
    """
    from .converters.checkpoint import checkpoint_to_ir, model_to_ir

    if _is_model(model):
        meta = {"dataset": getattr(model, "meta", {}).get("dataset", ""), **(meta or {})}
        return model_to_ir(model, meta, validate=validate)
    if isinstance(model, (str, Path)):
        return checkpoint_to_ir(model)
    raise QsnnError(f"cannot convert a {type(model).__name__}; pass a model or a checkpoint path")


# ---------------------------------------------------------------- run, verify
def simulate(net, spikes=None, *, backend: str = "reference", dataset: str | None = None, data_dir=None,
             denoise: bool = False, samples: int | None = None, progress: bool = False,
             workers: int | None = None) -> Record:
    """Run a network on one backend ("reference": the exact integer simulator; "lava": Lava's
    bit-accurate CPU models in a worker process; "torch": the model's eval forward, needs the model).

    ``spikes`` are [T, N, n_in] (0/1); without them the test split of ``dataset`` is used (the Record's
    ``info["labels"]`` then holds the labels). ``workers``: the reference's sample shards run on that many
    threads (default torch's thread count), Lava's on that many worker processes (default 1); the spikes are
    the same for any number. Returns every layer's spikes [T, N, n] as a Record.

    Example:
        >>> import qsnn_lava as ql, numpy as np
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense(np.array([[1, 1]])), ql.LIF(1, vth=1, du=4095, dv=0))], 4)
        >>> rec = ql.simulate(net, np.ones((4, 1, 2), np.uint8))
        >>> rec.spikes[-1][:, 0, 0].tolist()
        [1, 1, 1, 1]
    """
    if backend not in backend_names():
        raise QsnnError(f"unknown backend '{backend}' (known: {', '.join(backend_names())})")
    workers = _positive_int(workers, "workers", allow_none=True)
    net_, model = _network(net)
    labels = None
    if spikes is None:
        spikes, labels = _test_inputs(net_, dataset or "digits", data_dir, denoise, samples, progress)
    spikes = _check_spikes(spikes, net_)
    rec = _run_backends(net_, model, spikes, [backend], progress, workers=workers)[0]
    if labels is not None:
        rec.info["labels"] = labels
    return rec


def _check_spikes(spikes, net: Network) -> np.ndarray:
    from .data import check_spike_array

    x = check_spike_array(np.asarray(spikes), "input spikes", net.input_bits)
    if x.ndim != 3 or x.shape[0] != net.timesteps or x.shape[2] != net.n_in or x.shape[1] < 1:
        raise QsnnError(f"input spikes have shape {x.shape}; this network takes [T={net.timesteps}, N, {net.n_in}]")
    return np.ascontiguousarray(x)


def _run_backends(net: Network, model, spikes: np.ndarray, backends, progress: bool, device=None,
                  workers: int | None = None) -> list:
    from .deployment.backends import get_backend
    from .training import evaluate

    records = []
    for name in backends:
        if name == "torch":
            if model is None:
                raise QsnnError("the torch backend needs the checkpoint (the trained model): pass it, or drop torch "
                                "from the backends")
            records.append(evaluate(model, spikes, device=device))
        else:
            records.append(get_backend(name)(net, spikes, progress=progress, device=device, workers=workers))
    return records


@dataclass
class VerifyResult:
    """The outcome of ``verify``: ``report`` (accuracies, mismatch counts per pair and layer, first
    divergence, timings, overflow bounds), the Records compared, and the inputs and labels they ran on.

    Example:
        >>> import qsnn_lava as ql
        >>> res = ql.verify(ql.train(epochs=1, hidden=[8], timesteps=2), samples=5, backends=("torch", "reference"))
        >>> res.equivalent, res.to_dict()["spike_mismatches"]
        (True, {'trained_vs_reference': 0})
    """

    report: dict
    records: list = field(default_factory=list, repr=False)
    spikes: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def equivalent(self) -> bool:
        """True when every pair of backends agreed on every (sample, layer, neuron, timestep) spike."""
        return bool(self.report["equivalent"])

    def to_dict(self) -> dict:
        """The report as the CLI writes it to report.json."""
        return self.report

    def raster(self, path=None, sample: int | None = None):
        """Spike rasters of every backend side by side, one row per layer; by default the first diverging
        sample. Saved as PNG at ``path``, or returned as a matplotlib figure without one."""
        from .deployment.plots import raster

        return raster(self.records, self.spikes, path, sample=self._first_sample() if sample is None else sample)

    def heatmap(self, path=None):
        """Mismatching events per (layer, time step) for each pair of backends (PNG at ``path``, or the
        figure)."""
        from .deployment.plots import mismatch_heatmap

        return mismatch_heatmap(self.records, path)

    def _first_sample(self) -> int:
        first = next((c["first_divergence"] for c in self.report.get("comparisons", {}).values()
                      if c.get("first_divergence")), None)
        return first["sample"] if first else 0

    def save(self, out) -> list:
        """report.json, report.html, raster.png and mismatch_heatmap.png into folder ``out``, all or none."""
        from .deployment.plots import html_report
        from .io import output_dir

        names = ["report.json", "report.html", "raster.png", "mismatch_heatmap.png"]
        with output_dir(out, names) as tmp:
            self.raster(tmp["raster.png"])
            self.heatmap(tmp["mismatch_heatmap.png"])
            tmp["report.json"].write_text(_json(self.report))
            sample = self._first_sample()
            html_report(self.report, {f"Spike rasters, sample {sample}": tmp["raster.png"],
                                      "Mismatches per layer and time step": tmp["mismatch_heatmap.png"]},
                        tmp["report.html"])
        return [Path(out) / n for n in names]


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _check_backends(backends) -> list:
    names = [b.strip() for b in (backends.split(",") if isinstance(backends, str) else backends) if b.strip()]
    known = backend_names()
    bad = [b for b in names if b not in known]
    if bad:
        raise QsnnError(f"unknown backend '{bad[0]}' (known: {', '.join(known)})")
    if len(names) < 2 or len(set(names)) != len(names):
        raise QsnnError(f"backends {','.join(names)}: give two or more different ones of {', '.join(known)} "
                        "(one backend compared with itself proves nothing)")
    return names


def verify(target, *, dataset: str = "digits", data_dir=None, denoise: bool = False, samples: int | None = None,
           backends=None, against=None, progress: bool = False, device: str = "auto",
           workers: int | None = None) -> VerifyResult:
    """Run the same inputs on several backends and compare every spike event, layer by layer.

    ``target`` is a model, a checkpoint, an IR (file or Network) or a bundle folder. ``backends`` default
    to torch, reference, lava when the trained model is known (a checkpoint, or ``against=CKPT`` for an
    IR), else reference, lava. A bundle is checked against its own manifest hashes and expected outputs.
    Equivalent means 0 mismatches between every consecutive pair; on a mismatch the first divergence
    is diagnosed with u/v traces and a likely cause. ``device`` ("auto", "cpu", "cuda", "cuda:N") is where the
    torch model and the reference compute (Lava runs on the CPU). Started by torchrun, each process runs its
    contiguous share of the samples on every backend and the spikes are gathered back: every process gets
    the report of all samples, the same as one process's. ``workers`` as for ``simulate`` (the reference's
    threads, Lava's worker processes).

    Example:
        >>> import qsnn_lava as ql
        >>> model = ql.train(epochs=1, hidden=[16], timesteps=4)
        >>> ql.verify(model, samples=20, backends=("torch", "reference")).equivalent
        True
    """
    from .bounds import static_bounds
    from .deployment.bundle import is_bundle
    from .deployment.verify import report
    from .distributed import resolve_device, start, stop, under_torchrun

    workers = _positive_int(workers, "workers", allow_none=True)
    if not under_torchrun():
        resolve_device(device)  # a bad device is refused before any work
    if isinstance(target, (str, Path)) and is_bundle(target):
        return _verify_bundle(target, backends, progress)
    net, model = _network(target)
    if against is not None:
        if model is not None:
            raise QsnnError("against= compares an IR with its checkpoint: pass the IR as the target")
        model = _model(against)
        if [layer.neuron.n for layer in model.layers] != [layer.neuron.n for layer in net.layers]:
            raise QsnnError(f"'{target}' and '{against}' have different layer sizes")
    if backends is None:
        backends = backend_names() if model is not None else backend_names()[1:]
    names = _check_backends(backends)
    spikes, labels = _test_inputs(net, dataset, data_dir, denoise, samples, progress)
    bounds = static_bounds(net)
    ctx = start(device)  # under torchrun: this process's share of the samples; else None
    try:
        part = spikes[:, ctx.shard(spikes.shape[1])] if ctx else spikes
        records = _run_backends(net, model, part, names, progress, ctx.device if ctx else resolve_device(device),
                                workers)
        if ctx:
            records = [ctx.gather_record(r) for r in records]
    finally:
        stop(ctx)
    rep = report(records, labels)
    rep["dataset"] = dataset
    rep["overflow"] = {"static": bounds,
                       "runtime": next((r.info["overflow"] for r in records if "overflow" in r.info), None)}
    if not rep["equivalent"]:
        _diagnose(rep, net, model, spikes, records)
    return VerifyResult(rep, records, spikes, labels)


def _verify_bundle(path, backends, progress: bool) -> VerifyResult:
    from .deployment.bundle import verify_bundle

    kw = {} if backends is None else {"backends": tuple(_check_backends(backends))}
    rep = verify_bundle(path, progress=progress, **kw)
    return VerifyResult(rep)


def _diagnose(rep, net, model, spikes, records) -> None:
    from .converters.checkpoint import model_to_ir
    from .deployment.backends.lava import trace as lava_trace
    from .deployment.verify import diagnose
    from .reference import trace as ref_trace

    torch_net = model_to_ir(model) if model is not None else None
    tracers = {"torch": lambda n, s, li: ref_trace(torch_net, s, li), "reference": ref_trace, "lava": lava_trace}
    for (key, comp), (a, b) in zip(rep["comparisons"].items(), zip(records[:-1], records[1:])):
        if comp["first_divergence"]:
            comp["diagnosis"] = diagnose(net, spikes, comp["first_divergence"], tracers[a.backend],
                                         tracers[b.backend])


# ---------------------------------------------------------------- deploy, netx
@dataclass
class DeployResult:
    """What ``deploy`` did: the bundle folder, its manifest (design rules, resources, netx, hashes), and
    the run of the bundle on its target: ``status`` 0 equal to the expected spikes, 1 not, 3 Loihi 2 was
    asked for but Intel's lava-loihi is not installed (the bundle is written all the same).

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=4095))], 3)
        >>> res = ql.deploy(net, out=os.path.join(tempfile.mkdtemp(), "b"), spikes=[[[1, 0]], [[1, 1]], [[0, 1]]],
        ...                 run=False)
        >>> res.status, res.drc["passed"], res.to_dict()["manifest"]["target"]
        (0, True, 'cpu')
    """

    path: Path
    manifest: dict
    status: int
    lines: list = field(default_factory=list)  # what the bundle's run reported, one line per run

    @property
    def drc(self) -> dict:
        """The design-rule check's result (passed, violations, rules, overflow bounds)."""
        return self.manifest["design_rules"]

    @property
    def resources(self) -> dict:
        """The Loihi 2 resource estimate (cores, memory per layer)."""
        return self.manifest["resources"]

    def to_dict(self) -> dict:
        """The manifest, the bundle's path and the run's status."""
        return {"path": str(self.path), "status": self.status, "runs": self.lines, "manifest": self.manifest}


def design_rules(net, cpu: bool = False) -> dict:
    """Loihi 2's design-rule check of a network (or model/checkpoint/IR path): every violation with its
    layer, field, value and limit; ``cpu=True`` allows CPU-only neuron models (qmem).

    Example:
        >>> import qsnn_lava as ql
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[300, 1]]), ql.LIF(1, vth=1, du=4095, dv=0))], 4)
        >>> drc = ql.design_rules(net)
        >>> drc["passed"], drc["violations"][0]["field"], drc["violations"][0]["value"]
        (False, 'weight', 300)
    """
    from .deployment.drc import design_rule_check

    net, _ = _network(net, validate=False)
    return design_rule_check(net, cpu=cpu)


def deploy(net, *, target: str = "cpu", out, dataset: str = "digits", data_dir=None, denoise: bool = False,
           samples: int = 8, spikes=None, chip_model=None, run: bool = True, progress: bool = False) -> DeployResult:
    """Check Loihi 2's design rules, estimate resources, and write a versioned bundle folder ``out`` (IR,
    netx file where netx can express the network, sample inputs, expected outputs, manifest, run.py);
    then run it: on Loihi 2 (``target="loihi2"``, needs lava-loihi) or on Lava's CPU models.

    The bundle's sample inputs are the first ``samples`` test samples of ``dataset``, or ``spikes``
    [T, N, n_in] when given. An existing ``out`` is replaced only if it is a bundle; a network that
    breaks a rule writes nothing.

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> model = ql.train(epochs=1, hidden=[16], timesteps=4)
        >>> res = ql.deploy(model, out=os.path.join(tempfile.mkdtemp(), "bundle"), samples=2, run=False)
        >>> res.drc["passed"], sorted(res.manifest["files"])[:2]
        (True, ['expected_output.npy', 'model.ir.h5'])
    """
    from .deployment.bundle import (EXIT_NO_LOIHI, check_bundle_out, loihi_installed, run_bundle_lines,
                                write_bundle)
    from .deployment.drc import format_violations
    from .deployment.resources import ChipModel, estimate, shapes_from_ir

    if target not in ("cpu", "loihi2"):
        raise QsnnError(f"target '{target}' is not supported (cpu or loihi2)")
    inputs = [net] if isinstance(net, (str, Path)) else []
    check_bundle_out(out, inputs)
    net_, _ = _network(net, validate=False)
    drc = design_rules(net_, cpu=target == "cpu")
    if not drc["passed"]:
        raise QsnnError(f"the network breaks {len(drc['violations'])} Loihi 2 design rule(s); no bundle written:"
                        f" {format_violations(drc).strip()}")
    chip = ChipModel.from_json(chip_model) if chip_model else ChipModel()
    resources = estimate(shapes_from_ir(net_), chip)
    if spikes is None:
        spikes, _ = _test_inputs(net_, dataset, data_dir, denoise, samples, progress)
    spikes = _check_spikes(spikes, net_)
    manifest = write_bundle(net_, out, spikes, drc, resources, target)
    if not run:
        return DeployResult(Path(out), manifest, 0)
    if target == "loihi2" and not loihi_installed():
        return DeployResult(Path(out), manifest, EXIT_NO_LOIHI)
    status, lines = run_bundle_lines(out, hardware=target == "loihi2")
    return DeployResult(Path(out), manifest, status, lines)


def export_netx(net, path, inputs=()) -> None:
    """Write a network (or model/checkpoint/IR path) as a lava-dl netx HDF5 file, loadable with
    ``lava.lib.dl.netx.hdf5.Network(path, reset_interval=T, reset_offset=1)``; what netx cannot express
    (residual skips, qmem neurons) is refused by name. ``inputs``: files the caller read (never overwritten).

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=0))], 4)
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.net")
        >>> ql.export_netx(net, path)
        >>> ql.import_netx(path, timesteps=4).layers[0].synapse.weight.tolist()
        [[3, -1]]
    """
    from .converters.netx import export_netx as _export
    from .io import check_output

    check_output(path, inputs=[*inputs, *([net] if isinstance(net, (str, Path)) else [])])
    net_, _ = _network(net)
    _export(net_, path)


def import_netx(path, timesteps: int) -> Network:
    """A lava-dl netx HDF5 file (CUBA dense and conv layers) -> Network; ``timesteps`` per sample, which
    netx files do not carry.

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> net = ql.Network((3,), [ql.Layer("out", ql.Dense([[1, 2, 3]]), ql.LIF(1, vth=5, du=4095, dv=0))], 2)
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.net")
        >>> ql.export_netx(net, path)
        >>> back = ql.import_netx(path, timesteps=2)
        >>> back.timesteps, back.layers[0].neuron.vth
        (2, 5)
    """
    from .converters.netx import import_netx as _import

    return _import(path, _positive_int(timesteps, "timesteps"))


def import_nir(graph, dt: float | None = None, timesteps: int | None = None, *, weight_bits: int = 8,
               calibration=None, labels=None, approximate: bool = False, method: str = "euler"):
    """A NIR graph (``nir.NIRGraph`` or a .nir file, from snnTorch, Norse, Sinabs, SpikingJelly, Rockpool or
    ``export_nir``) -> (Network, report). NIR holds float ODE parameters and no time step: ``dt`` (seconds
    per step) sets the 12-bit decays (``method`` "euler": dv = round(4096 dt / tau); "exp": from
    1 - exp(-dt / tau)); weights become ``weight_bits``-bit mantissas with a per-layer weight_exp (from the
    ``calibration`` spikes [T, N, n_in] when given). What Loihi 2's CUBA LIF cannot express is refused by
    name unless ``approximate``; the report gives every quantization error and the float-vs-integer spike
    agreement per layer (and both accuracies with ``labels``). Our own exports import bit-exactly.
    docs/nir.md has the mapping and the formulas.

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=410))], 4)
        >>> path = os.path.join(tempfile.mkdtemp(), "g.nir")
        >>> ql.export_nir(net, path)
        >>> back, report = ql.import_nir(path)
        >>> report["exact"], back.layers[0].neuron.dv
        (True, 410)
    """
    from .converters.nir import import_nir as _import

    timesteps = _positive_int(timesteps, "timesteps", allow_none=True)
    return _import(graph, dt, timesteps, weight_bits, calibration, labels=labels, approximate=approximate,
                   method=method)


def export_nir(net, path=None, dt: float = 1e-3, inputs=()):
    """A network (or model/checkpoint/IR path) as a NIR graph other tools can load and run: float parameters
    equal to the integers times their units at time step ``dt`` (seconds), with the exact integers in node
    metadata so that ``import_nir`` gives back the identical IR. Written to ``path`` (atomically) when given;
    else the ``nir.NIRGraph`` is returned.

    Example:
        >>> import qsnn_lava as ql
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=410))], 4)
        >>> graph = ql.export_nir(net)
        >>> sorted(type(node).__name__ for node in graph.nodes.values())
        ['Affine', 'Input', 'LIF', 'Output']
    """
    from .converters.nir import export_nir as _export, write_nir

    net_, _ = _network(net)
    if path is None:
        return _export(net_, dt)
    from .io import check_output

    check_output(path, inputs=[*inputs, *([net] if isinstance(net, (str, Path)) else [])])
    write_nir(net_, path, dt)
    return None


# ---------------------------------------------------------------- finetune
def finetune(target, *, dataset: str | None = None, data_dir=None, denoise: bool = False, epochs: int = 5,
             lr: float | None = None, batch_size: int = 64, seed: int = 0, train_samples: int | None = None,
             samples: int | None = None, biases: bool = True, out=None, progress: bool = False):
    """Recover accuracy lost in conversion (``import_nir``, pruning, ...) by quantization-aware training in
    the exact integer dynamics the network deploys with, so that trained = deployed again.

    ``target``: an IR (file, bundle or Network, e.g. from ``import_nir``) -> a fine-tuned ``Network``; a
    checkpoint or model -> a fine-tuned model (``training.train`` from its weights, its own quantizer).
    An IR trains through ``qsnn_lava.irmodel.IRModel``: latent weights start at the integer mantissas and
    are rounded straight-through inside each synapse's legal range; weight_exp, vth, du, dv stay fixed;
    biases are learned within their 13-bit mantissa unless ``biases=False`` (docs/nir.md, "Fine-tuning").
    Adam from ``lr`` (cosine over ``epochs``; an IR: weight mantissas per step, default 0.05; a checkpoint:
    as ``train``'s, default 1e-3), ``batch_size`` samples per step, on ``train_samples`` seeded
    training samples of ``dataset`` (default: the target's, else digits; None: all); accuracy on the
    first ``samples`` test samples (None: all). With ``out`` the result is written there (never onto the
    input). The result's ``.meta["finetune"]`` records the settings, the accuracy before and after (after:
    the deployed network's) and the test accuracy per epoch.

    Example:
        >>> import qsnn_lava as ql
        >>> net = ql.convert(ql.train(epochs=1, hidden=[16], timesteps=4))
        >>> tuned = ql.finetune(net, epochs=1, train_samples=200, samples=50)
        >>> tuned.meta["finetune"]["epochs"], tuned.layers[0].neuron.vth == net.layers[0].neuron.vth
        (1, True)
    """
    from .data import Dataset
    from .io import check_output
    from .pruning import subset

    epochs, batch_size = _positive_int(epochs, "epochs"), _positive_int(batch_size, "batch_size")
    lr = _positive_float(lr, "lr")
    train_samples = _positive_int(train_samples, "train_samples", allow_none=True)
    samples = _positive_int(samples, "samples", allow_none=True)
    if out is not None:
        check_output(out, inputs=[target] if isinstance(target, (str, Path)) else [])
    obj = target if isinstance(target, Network) or _is_model(target) else load(target)
    is_model = _is_model(obj)
    lr = lr if lr is not None else (1e-3 if is_model else 0.05)
    meta0 = dict(getattr(obj, "meta", {}) or {})
    dataset = dataset or meta0.get("dataset") or "digits"
    T = int(obj.config["timesteps"]) if is_model else obj.timesteps
    n_in = int(obj.config["sizes"][0]) if is_model else obj.n_in
    n_out = int(obj.config["sizes"][-1]) if is_model else obj.layers[-1].neuron.n
    data = load_dataset(dataset, data_dir, T, denoise, progress)
    if data.n_in != n_in or data.n_classes != n_out:
        raise QsnnError(f"dataset '{dataset}' has {data.n_in} inputs and {data.n_classes} classes; the network takes "
                        f"{n_in} and has {n_out} outputs")
    if train_samples is not None and train_samples < len(data.train.y):
        idx = np.sort(np.random.default_rng(seed + 1).permutation(len(data.train.y))[:train_samples])
        data = Dataset(data.name, subset(data.train, idx), data.test, data.n_in, data.n_classes, data.shape)
    x_test, y_test = encode(data.test, T, samples, obj.input_bits)
    settings = {"dataset": dataset, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                "train_samples": train_samples, "test_samples": int(x_test.shape[1])}
    if not is_model:
        settings["biases"] = bool(biases)  # a checkpoint's biases follow its own model (BatchNorm folding)
    if is_model:
        result = _finetune_model(obj, data, x_test, y_test, settings, progress)
    else:
        result = _finetune_ir(obj, data, x_test, y_test, settings, progress)
    if out is not None:
        save(result, out, inputs=[target] if isinstance(target, (str, Path)) else [])
    return result


def _finetune_ir(net: Network, data, x_test, y_test, settings: dict, progress: bool) -> Network:
    from .irmodel import finetune as _finetune
    from .reference import simulate as reference

    x_train, y_train = encode(data.train, net.timesteps, input_bits=net.input_bits)
    tuned, hist = _finetune(net, x_train, y_train, x_test, y_test, epochs=settings["epochs"], lr=settings["lr"],
                            batch_size=settings["batch_size"], seed=settings["seed"], biases=settings["biases"],
                            progress=progress)
    deployed = reference(tuned, x_test).accuracy(y_test)  # the written integers, on the golden model
    tuned.meta = {**{k: v for k, v in net.meta.items() if k != "finetune"},
                  "finetune": {**settings, "accuracy_before": hist["test_acc_before"], "accuracy_after": deployed,
                               "test_accuracy_per_epoch": hist["test_acc"], "loss_per_epoch": hist["loss"],
                               "seconds": round(hist["seconds"], 3)}}
    return tuned


def _finetune_model(model, data, x_test, y_test, settings: dict, progress: bool):
    from .pruning import finetune as _finetune
    from .training import evaluate

    meta0 = dict(getattr(model, "meta", {}) or {})
    before = evaluate(model, x_test).accuracy(y_test)
    tuned, hist = _finetune(model, data, settings["epochs"], settings["lr"], settings["batch_size"],
                            settings["seed"], None, int(meta0.get("epochs", 0) or 0), progress=progress)
    after = evaluate(tuned, x_test).accuracy(y_test)
    tuned.history = hist
    tuned.meta = {**{k: v for k, v in meta0.items() if k != "finetune"}, "dataset": settings["dataset"],
                  "test_accuracy": after,
                  "finetune": {**settings, "accuracy_before": before, "accuracy_after": after,
                               "test_accuracy_per_epoch": hist["test_acc"], "loss_per_epoch": hist["loss"],
                               "seconds": round(hist["seconds"], 3)}}
    return tuned


# ---------------------------------------------------------------- energy
@dataclass
class EnergyReport:
    """Operation counts from simulation (SynOps, spikes, neuron updates, memory), NeuroBench-style
    metrics, and energy per inference under each cost table; every number an estimate with its table.

    Example:
        >>> import qsnn_lava as ql, numpy as np
        >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=4095))], 3)
        >>> rep = ql.energy(net, spikes=np.ones((3, 4, 2), np.uint8), tables=("cmos45_snn",))
        >>> rep.counts["samples"], rep.table().splitlines()[0].startswith("|")
        (4, True)
    """

    counts: dict
    results: list
    neurobench: dict
    lava_counts_equal: bool | None = None
    accuracy: float | None = None  # the QSNN's on the counted samples (reference), when their labels are known
    verdicts: list = field(default_factory=list)  # one line per ANN table (deployment.energy.verdicts)

    def to_dict(self) -> dict:
        """The CLI's energy.json."""
        out = {"counts": self.counts, "neurobench": self.neurobench, "energy": self.results,
               "accuracy": self.accuracy, "verdicts": self.verdicts}
        if self.lava_counts_equal is not None:
            out["lava_counts_equal"] = self.lava_counts_equal
        return out

    def table(self) -> str:
        """Markdown table: energy per inference per cost table, and the ratio to the first."""
        from .deployment.energy import compare_table

        return compare_table(self.results)

    def bar_chart(self, path=None):
        """Energy per inference per table as a bar chart, log scale (PNG at ``path``, or the figure)."""
        from .deployment.energy import energy_bar_chart

        return energy_bar_chart(self.results, path)

    def save(self, out) -> list:
        """energy.json and energy.png into folder ``out``, all or none."""
        from .io import output_dir

        with output_dir(out, ["energy.json", "energy.png"]) as tmp:
            tmp["energy.json"].write_text(_json(self.to_dict()))
            self.bar_chart(tmp["energy.png"])
        return [Path(out) / "energy.json", Path(out) / "energy.png"]


def energy(net, *, dataset: str = "digits", data_dir=None, denoise: bool = False, samples: int | None = None,
           spikes=None, tables=DEFAULT_TABLES, cost_tables=(), check_lava: bool = False,
           progress: bool = False, device: str = "auto", ann_accuracy=None,
           accuracy: float | None = None) -> EnergyReport:
    """Count operations on the reference simulator (exact: the deployed integers) and price them per
    inference with labelled cost tables (built-in names, or JSON files in ``cost_tables``).
    ``check_lava`` counts on Lava too and sets ``lava_counts_equal``. ``device`` ("auto", "cpu", "cuda",
    "cuda:N") is where the reference simulation computes (the counts are the same on any). The QSNN's
    ``accuracy`` (a fraction) is measured on the dataset's samples (or given, with your own ``spikes``); with
    ``ann_accuracy`` (the ANN twin's: a fraction, or {table name: fraction}) the report adds one verdict line
    per ANN table.

    Example:
        >>> import qsnn_lava as ql
        >>> rep = ql.energy(ql.train(epochs=1, hidden=[16], timesteps=4), samples=10, tables=("cmos45_snn",))
        >>> rep.results[0]["table"], rep.counts["samples"]
        ('cmos45_snn', 10)
    """
    from .deployment.backends import get_backend
    from .deployment.energy import TABLES, count_ops, energy as price, load_cost_table, neurobench_metrics
    from .distributed import resolve_device

    device = resolve_device(device)

    names = [t.strip() for t in (tables.split(",") if isinstance(tables, str) else tables) if t.strip()]
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise QsnnError(f"unknown cost table '{unknown[0]}' (built in: {', '.join(TABLES)}; your own: a JSON file "
                        "with --cost-table)")
    priced = [TABLES[t] for t in names] + [load_cost_table(p) for p in cost_tables]
    if not priced:
        raise QsnnError("no cost table given; name at least one")
    from .deployment.energy import verdicts

    for name, v in (ann_accuracy.items() if isinstance(ann_accuracy, dict) else [("ann_accuracy", ann_accuracy)]):
        if v is not None:
            _fraction(v, f"ann_accuracy of {name}" if name != "ann_accuracy" else name)
    if accuracy is not None:
        _fraction(accuracy, "accuracy")
    net_, _ = _network(net)
    labels = None
    if spikes is None:
        spikes, labels = _test_inputs(net_, dataset, data_dir, denoise, samples, progress)
    spikes = _check_spikes(spikes, net_)
    record = get_backend("reference")(net_, spikes, progress=progress, device=device)
    counts = count_ops(net_, spikes, record)
    if accuracy is None and labels is not None:
        accuracy = record.accuracy(labels)
    same = None
    if check_lava:
        same = count_ops(net_, spikes, get_backend("lava")(net_, spikes, progress=progress)) == counts
    results = [price(counts, t) for t in priced]
    return EnergyReport(counts, results, neurobench_metrics(counts), same, accuracy,
                        verdicts(results, accuracy, ann_accuracy))


def _fraction(value, name: str) -> float:
    """``value`` if it is a number in [0, 1], else QsnnError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) <= 1:
        raise QsnnError(f"{name} = {value!r} must be a fraction in [0, 1] (0.923 for 92.3 %)")
    return float(value)


# ---------------------------------------------------------------- prune
def prune(model, *, criterion: str = "svs", ratio: float | None = None, ratios=None, finetune_epochs: int = 1,
          dataset: str | None = None, data_dir=None, denoise: bool = False, batches: int = 4,
          batch_size: int = 64, lr: float = 1e-3, train_samples: int | None = None, samples: int | None = None,
          synops_samples: int = 256, seed: int = 0, progress: bool = False, device: str = "auto"):
    """Structured pruning (QP-SNN): score every channel/neuron of each prunable layer by ``criterion``
    ("svs": singular-value spike rank, Eq. 13; "sca": membrane L1; "random"), remove the lowest ``ratio``
    (or one of ``ratios`` per layer group), physically shrink the network, and fine-tune it
    ``finetune_epochs`` epochs (Adam, cosine from ``lr``). ``device`` ("auto", "cpu", "cuda", "cuda:N") is
    where the accuracies are measured and the fine-tuning runs (scores are computed on the CPU).

    Returns the pruned model (eval mode) whose ``.meta["pruning"]`` records what was done and whose
    ``.pruning`` holds the full summary (kept indices, score stability, accuracies before / pruned /
    fine-tuned, parameters, QP-SNN Eq. 16 size and SynOps before and after).

    Example:
        >>> import qsnn_lava as ql
        >>> small = ql.prune(ql.train(epochs=1, hidden=[16], timesteps=4), ratio=0.5, finetune_epochs=0, samples=20)
        >>> small.config["sizes"]
        [64, 8, 10]
    """
    import hashlib

    from .converters.checkpoint import model_to_ir
    from .distributed import resolve_device
    from .pruning import (CRITERIA, finetune, parse_ratios, plan, prune_model, score_channels, scoring_batches,
                          stability, summarize)
    from .training import evaluate

    device = resolve_device(device)
    source = model if isinstance(model, (str, Path)) else None
    model = _model(model)
    if criterion not in CRITERIA:
        raise QsnnError(f"criterion '{criterion}' is not supported (known: {', '.join(CRITERIA)})")
    ratios = parse_ratios(ratio, ratios)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, (int, np.integer)) or finetune_epochs < 0:
        raise QsnnError(f"finetune_epochs = {finetune_epochs!r} must be a whole number >= 0")
    batches, batch_size = _positive_int(batches, "batches"), _positive_int(batch_size, "batch_size")
    lr, synops_samples = _positive_float(lr, "lr"), _positive_int(synops_samples, "synops_samples")
    plan(model, ratios)  # every ratio error before any data is read
    meta0 = getattr(model, "meta", {})
    T = int(model.config["timesteps"])
    dataset = dataset or meta0.get("dataset") or "digits"
    data = load_dataset(dataset, data_dir, T, denoise, progress)
    if data.n_in != int(model.config["sizes"][0]) or data.n_classes != int(model.config["sizes"][-1]):
        raise QsnnError(f"dataset '{dataset}' has {data.n_in} inputs and {data.n_classes} classes; the network "
                        f"takes {model.config['sizes'][0]} and has {model.config['sizes'][-1]} outputs")
    scores = score_channels(model, scoring_batches(data, T, batches, batch_size, seed, model.input_bits), criterion,
                            seed)
    pruned, groups = prune_model(model, scores, ratios)
    x, y = encode(data.test, T, samples, model.input_bits)
    acc_before = evaluate(model, x, device=device).accuracy(y)
    acc_pruned = evaluate(pruned, x, device=device).accuracy(y)
    hist = None
    if finetune_epochs > 0:
        pruned, hist = finetune(pruned, data, finetune_epochs, lr, batch_size, seed, train_samples,
                                int(meta0.get("epochs", 0) or 0), progress=progress, device=device)
    acc_after = evaluate(pruned, x, device=device).accuracy(y)
    n_sum = min(synops_samples, x.shape[1])
    before = summarize(model_to_ir(model, validate=False), x[:, :n_sum])
    after = summarize(model_to_ir(pruned, validate=False), x[:, :n_sum])
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source is not None else None
    pruned.meta = {**{k: v for k, v in meta0.items() if k not in ("test_accuracy", "pruning")},
                   "dataset": dataset, "test_accuracy": acc_after,
                   "pruning": {"source_checkpoint_sha256": digest, "criterion": criterion,
                               "ratios": [g["ratio"] for g in groups], "finetune_epochs": finetune_epochs,
                               "widths": {"+".join(g["layers"]): [g["width"], g["keep"]] for g in groups},
                               "accuracy_before": acc_before}}
    pruned.pruning = {
        "checkpoint": str(source) if source is not None else None, "dataset": dataset, "criterion": criterion,
        "batches": batches, "batch_size": batch_size, "seed": seed,
        "groups": [{"layers": g["layers"], "ratio": g["ratio"], "before": g["width"], "after": g["keep"],
                    "kept": [int(i) for i in g["kept"]],
                    "score_stability": stability(s["per_batch"])} for g, s in zip(groups, scores)],
        "finetune": {"epochs": finetune_epochs, "lr": lr, "train_samples": train_samples,
                     "test_accuracy_per_epoch": hist["test_acc"] if hist else [],
                     "seconds": hist["seconds"] if hist else 0.0},
        "accuracy": {"before": acc_before, "pruned": acc_pruned, "finetuned": acc_after, "samples": int(x.shape[1])},
        "summary": {"before": before, "after": after, "synops_samples": n_sum},
        "config": pruned.config,
    }
    return pruned


# ---------------------------------------------------------------- demo
@dataclass
class DemoResult:
    """The demo's verification (``verify``: trained vs reference vs Lava on digits), the files it wrote,
    and ``lava_skipped`` (None, or why Lava could not run here and how to add it). ``demo`` makes one.

    Example:
        >>> import qsnn_lava as ql
        >>> ql.DemoResult(ql.VerifyResult({"equivalent": True}), {}).equivalent
        True
    """

    verify: VerifyResult
    files: dict
    lava_skipped: str | None = None

    @property
    def equivalent(self) -> bool:
        """True when every backend that ran agreed spike for spike."""
        return self.verify.equivalent

    def to_dict(self) -> dict:
        """The demo's report.json."""
        return self.verify.report


def demo(out="out/demo", *, epochs: int = 30, seed: int = 0, lava_samples: int = 360, progress: bool = False,
         on_stage=None) -> DemoResult:
    """The main job: train a 64-256-10 4-bit QSNN on digits (T = 8), convert it, run the test set on the
    trained model, the integer reference and Lava, compare every spike, and write model.pt, model.ir.h5,
    report.json and raster.png into ``out`` (all or none). ``on_stage(message)`` hears each stage. Where
    no Lava environment exists the Lava step is skipped and ``lava_skipped`` says how to add it.

    Example:
        >>> import qsnn_lava as ql, tempfile, os
        >>> res = ql.demo(os.path.join(tempfile.mkdtemp(), "demo"), epochs=1, lava_samples=5)
        >>> res.equivalent, sorted(res.files)
        (True, ['checkpoint', 'ir', 'raster', 'report'])
    """
    from .deployment.backends.lava import LAVA_SETUP_HINT, lava_available
    from .deployment.plots import raster
    from .deployment.verify import report
    from .io import check_output, output_dir
    from .models import make_config

    stage = on_stage or (lambda message: None)
    epochs, lava_samples = _positive_int(epochs, "epochs"), _positive_int(lava_samples, "lava_samples")
    names = ["model.pt", "model.ir.h5", "report.json", "raster.png"]
    check_output(out, kind="dir", names=names)
    data = load_dataset("digits")
    cfg = make_config(sizes=[data.n_in, 256, data.n_classes], bits=4, timesteps=8)
    stage(f"[1/4] training a {'-'.join(map(str, cfg['sizes']))} QSNN, {cfg['bits']}-bit {cfg['quant']} weights, "
          f"hard-reset LIF, T = {cfg['timesteps']}, on digits ({len(data.train.y)} train samples)")
    model = train(cfg, dataset="digits", epochs=epochs, seed=seed, progress=progress)
    with output_dir(out, names) as tmp:
        save(model, tmp["model.pt"])
        stage("[2/4] converting the checkpoint -> IR")
        convert(tmp["model.pt"]).save(tmp["model.ir.h5"])
        net = Network.load(tmp["model.ir.h5"])  # what is deployed is what was written
        spikes, labels = encode(data.test, net.timesteps)
        skipped = None if lava_available() else LAVA_SETUP_HINT
        n_lava = min(lava_samples, spikes.shape[1])
        stage(f"[3/4] running torch (eval), reference and Lava fixed_pt on {spikes.shape[1]} test samples "
              + (f"(Lava: {n_lava})" if skipped is None else "(Lava skipped: not available here)"))
        records = _run_backends(net, model, spikes, ["torch", "reference"], progress)
        if skipped is None:
            records += _run_backends(net, None, spikes[:, :n_lava], ["lava"], progress)
        rep = report(records, labels)
        rep["lava_skipped"] = skipped
        rep["train"] = {"epochs": epochs, "seconds": round(model.history["seconds"], 2),
                        "test_accuracy_per_epoch": model.history["test_acc"]}
        rep["network"] = {"sizes": cfg["sizes"], "bits": cfg["bits"], "quant": cfg["quant"],
                          "timesteps": cfg["timesteps"], "vth": [layer.neuron.vth for layer in net.layers],
                          "du": cfg["du"], "dv": cfg["dv"]}
        files = {k: str(Path(out) / v) for k, v in (("checkpoint", "model.pt"), ("ir", "model.ir.h5"),
                                                     ("report", "report.json"), ("raster", "raster.png"))}
        rep["files"] = files
        stage("[4/4] verifying")
        tmp["report.json"].write_text(_json(rep))
        raster([records[0], records[-1]], spikes, tmp["raster.png"])
    return DemoResult(VerifyResult(rep, records, spikes, labels), files, skipped)
