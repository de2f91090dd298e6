"""Quantization-aware BPTT on the deployed integer dynamics.

The forward pass is the integer network (float tensors holding integers, see qsnn_lava.dynamics and
``QSNN.train_dtypes``);
gradients flow through straight-through rounding and the triangular surrogate spike. The loss is
cross-entropy on the output layer's spike counts (or, for a readout output layer, its voltage summed over T:
``QSNN.logits``), the same quantity deployed inference classifies by, so the model that is evaluated is
exactly the model that is deployed.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, encode_intensities, encoded
from .distributed import Context, to_cpu
from .errors import QsnnError
from .metrics import forward_synops
from .models import QSNN, build_model
from .neurons import Readout
from .record import Record


def set_seed(seed: int) -> None:
    """Seed torch's and numpy's global random generators with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def evaluate(model, spikes: np.ndarray, batch_size: int = 256, dist: Context | None = None,
             device=None) -> Record:
    """Eval-mode (integer) forward of the torch model (a QSNN, or an ``irmodel.IRModel``); every layer's spikes
    as a Record.

    Runs on ``device`` (default: where the model is; the model is moved there and back). With ``dist``
    (several processes) each process runs its contiguous share of the samples and every layer's spikes are
    gathered back in order: the same Record, the same counts, as one process."""
    model.eval()
    home = next(model.parameters()).device
    device = home if device is None else torch.device(device)
    model.to(device)
    t0 = time.perf_counter()
    part = spikes[:, dist.shard(spikes.shape[1])] if dist else spikes
    readout = isinstance(model.layers[-1].neuron, Readout)  # its output is a voltage (int32 fits: 24-bit v)
    chunks = []
    with torch.no_grad():
        for lo in range(0, max(part.shape[1], 1), batch_size):  # an empty share still gives empty arrays
            layer_out = model(torch.from_numpy(part[:, lo:lo + batch_size].astype(np.int64)).to(device))
            chunks.append([s.cpu().numpy().astype(np.int32 if readout and i == len(layer_out) - 1 else np.uint8)
                           for i, s in enumerate(layer_out)])
    model.to(home)
    outs = [np.concatenate(per_layer, axis=1) for per_layer in zip(*chunks)]
    if dist:
        outs = dist.gather(outs)
    names = [layer.name for layer in model.layers]
    volts = {}
    if readout:  # as the reference records a readout: its voltage, and all-zero spikes
        volts[names[-1]] = outs[-1]
        outs[-1] = np.zeros(outs[-1].shape, np.uint8)
    return Record("torch", names, outs, info={"seconds": time.perf_counter() - t0}, voltages=volts)


RECIPE_DEFAULTS = {
    "weight_decay": 0.0,  # AdamW's decoupled decay on the weight tensors (not BatchNorm, thresholds or beta)
    "warmup_epochs": 0.0,  # > 0: linear warm-up over this many epochs, then cosine to 0, stepped per batch
    "label_smoothing": 0.0,  # cross-entropy label smoothing
    "crop_pad": 0,  # image data: random crop of the image padded by this many zero pixels on each side
    "flip": False,  # image data: random horizontal flip (half of the samples)
    "synops_budget": 0.0,  # activity regulariser (synops_penalty): SynOps per inference allowed (0: no budget)
    "synops_weight": 0.0,  # its weight (1 when only a budget is given); without a budget: per million SynOps
}


def check_recipe(recipe: dict | None) -> dict:
    """``RECIPE_DEFAULTS`` updated by ``recipe``; QsnnError naming an unknown key or a value out of range."""
    out = dict(RECIPE_DEFAULTS)
    for key, value in (recipe or {}).items():
        if key not in RECIPE_DEFAULTS:
            raise QsnnError(f"unknown training option '{key}' (known: {', '.join(RECIPE_DEFAULTS)})")
        if value is not None:
            out[key] = value
    for key, hi in (("weight_decay", 1.0), ("warmup_epochs", 1e6), ("label_smoothing", 0.999),
                    ("synops_budget", 1e15), ("synops_weight", 1e6)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= float(v) <= hi:
            raise QsnnError(f"{key} = {v!r} must be a number in [0, {hi:g}]")
        out[key] = float(v)
    if isinstance(out["crop_pad"], bool) or not isinstance(out["crop_pad"], (int, np.integer)) \
            or not 0 <= out["crop_pad"] <= 8:
        raise QsnnError(f"crop_pad = {out['crop_pad']!r} must be a whole number of pixels in [0, 8]")
    if not isinstance(out["flip"], (bool, np.bool_)):
        raise QsnnError(f"flip = {out['flip']!r} must be true or false")
    out["crop_pad"], out["flip"] = int(out["crop_pad"]), bool(out["flip"])
    if out["synops_budget"] and not out["synops_weight"]:
        out["synops_weight"] = 1.0
    return out


def synops_penalty(model: QSNN, x: torch.Tensor, outputs: list, budget: float, weight: float):
    """The activity regulariser (docs/energy.md): (loss term, SynOps per inference of this batch).

    The SynOps are ``metrics.forward_synops`` of this very forward (its spikes times the deployed weights'
    nonzero fan-out, the rule every count in the package uses), summed over layers, per inference. With a
    ``budget``: ``weight * max(0, S / budget - 1)``; without: ``weight * S / 1e6``."""
    s = sum(forward_synops(model, x, outputs)) / x.shape[1]
    term = weight * (torch.relu(s / budget - 1.0) if budget else s / 1e6)
    return term, float(s.detach())


def augment(x: np.ndarray, shape: tuple, crop_pad: int, flip: bool, gen: torch.Generator) -> np.ndarray:
    """Intensities ``x`` [B, n] of images ``shape`` (C, H, W): each sample flipped left-right with probability
    1/2 (``flip``) and cropped back to H x W at a random offset from the image zero-padded by ``crop_pad``
    pixels on every side. Random numbers come from ``gen`` (reproducible, resumable)."""
    b = len(x)
    img = x.reshape(b, *shape)
    if flip:
        mask = torch.rand(b, generator=gen).numpy() < 0.5
        img = np.where(mask[:, None, None, None], img[..., ::-1], img)
    if crop_pad:
        p, (_, h, w) = crop_pad, shape
        padded = np.pad(img, ((0, 0), (0, 0), (p, p), (p, p)))
        dy, dx = torch.randint(0, 2 * p + 1, (2, b), generator=gen).numpy()
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # [B, C, 2p+1, 2p+1, H, W]
        img = windows[np.arange(b), :, dy, dx]
    return np.ascontiguousarray(img).reshape(b, -1)


def _optimizer(model: QSNN, lr: float, weight_decay: float):
    """Adam (no decay: the original recipe), or AdamW decaying only the weight tensors (2-D and more)."""
    if not weight_decay:
        return torch.optim.Adam(model.parameters(), lr=lr)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr)


def _schedule(opt, epochs: int, steps_per_epoch: int, warmup_epochs: float):
    """Cosine over the epochs, stepped per epoch (no warm-up: the original recipe), or linear warm-up over
    ``warmup_epochs`` then cosine to 0, stepped per batch. Returns (scheduler, stepped per batch)."""
    if not warmup_epochs:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)), False
    total, warm = max(1, epochs * steps_per_epoch), max(1, round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor), True


def run_epoch(model, opt, inputs, yt: torch.Tensor, batch_size: int, gen: torch.Generator,
              dist: Context | None = None, device=None, forward=None, label_smoothing: float = 0.0,
              penalty=None, sched=None) -> dict:
    """One epoch of BPTT on the deployed dynamics: ``model`` (train mode) in batches shuffled by ``gen``,
    cross-entropy of the output layer's spike counts against ``yt``, one ``opt`` step per batch. Used by
    ``train`` and by ``irmodel.finetune``.

    ``inputs``: the spikes [T, N, n_in] (a float tensor), or a function from sample indices to that batch's
    input (``train``'s per-batch encoding and augmentation). ``penalty(model, x, outputs)`` -> (loss term,
    SynOps per inference), added to the loss (the activity regulariser); ``sched``: a scheduler stepped per
    batch. With ``dist`` (several processes) every process draws the same permutation and runs its contiguous
    share of each global batch, its loss weighted so that the averaged gradient is the global batch's;
    ``forward`` is the module to call (the DDP wrapper of ``model``; default ``model``); batches move to
    ``device``. Returns {"loss", "train_acc"} means over the epoch (and "synops" with a ``penalty``)."""
    model.train()
    forward = model if forward is None else forward
    batch = inputs if callable(inputs) else (lambda idx: inputs[:, idx])
    perm = torch.randperm(len(yt), generator=gen)
    total, correct, loss_sum, synops_sum = 0, 0, 0.0, 0.0
    for lo in range(0, len(perm), batch_size):
        idx = perm[lo:lo + batch_size]
        mine = idx[dist.shard(len(idx))] if dist else idx  # this process's share of the global batch
        x, y = batch(mine).to(device), yt[mine].to(device)
        outs = forward(x)
        counts = model.logits(outs[-1])  # spike counts, or a readout's voltage sum
        loss = F.cross_entropy(counts, y, label_smoothing=label_smoothing) if len(mine) else counts.sum() * 0.0
        if penalty is not None and len(mine):
            term, s = penalty(model, x, outs)
            loss = loss + term
            synops_sum += s * len(mine)
        opt.zero_grad()
        (loss * dist.weight(len(mine), len(idx)) if dist else loss).backward()
        opt.step()
        if sched is not None:
            sched.step()
        loss_sum += loss.item() * len(mine)
        correct += int((counts.argmax(-1) == y).sum())
        total += len(mine)
    if dist:
        loss_sum, correct, total, synops_sum = dist.sum_numbers(loss_sum, correct, total, synops_sum)
    out = {"loss": loss_sum / total, "train_acc": correct / total}
    if penalty is not None:
        out["synops"] = synops_sum / total
    return out


def train(cfg: dict, data: Dataset, epochs: int, batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
          progress: bool = True, log=print, resume: dict | None = None, on_epoch=None,
          init_state: dict | None = None, epoch_offset: int = 0, recipe: dict | None = None,
          eval_samples: int | None = None, device=None, dist: Context | None = None) -> tuple[QSNN, dict]:
    """Train ``epochs`` epochs in total. ``resume`` (a checkpoint dict with the ``"training"`` entry that
    ``on_epoch`` receives: epoch, optimizer, scheduler, generator, torch_rng, history, seconds) continues an interrupted run where it stopped, with the same optimizer, schedule,
    shuffling and history, so the result equals an uninterrupted run. ``on_epoch(model, state)`` is
    called after every epoch (the CLI saves a resumable checkpoint there). ``init_state`` starts from
    these weights instead of a random init (fine-tuning, e.g. a pruned network); ``epoch_offset`` is added to
    the epoch given to per-epoch schedules (the sigmoid quantizer's temperature continues, not restarts).
    ``recipe``: the training options of ``RECIPE_DEFAULTS`` (weight decay, warm-up + cosine, label smoothing,
    random crop and flip; docs/training.md); the defaults are the original recipe. ``eval_samples``: the
    per-epoch test accuracy uses the first n test samples (None: all).

    The input is encoded per batch from the intensities (after augmentation) with the network's input code:
    the rate code's 0/1 spikes, or the direct code's ``input_bits``-bit values (``data.encode_intensities``).

    ``device``: where to compute (a torch device or name; default the CPU). ``dist``: this process's
    ``distributed.Context`` when several train together (torchrun): ``batch_size`` is then the global batch,
    each process computes its share of it, and the result equals one process's up to the order of float
    sums (docs/training.md). The model is returned on the CPU, in eval mode."""
    rc = check_recipe(recipe)
    set_seed(seed)
    device = torch.device("cpu") if device is None else torch.device(device)
    model = build_model(cfg, resume["state_dict"] if resume else init_state).to(device)
    net = dist.wrap(model) if dist else model  # the forward that averages gradients over the processes
    T, bits = int(cfg["timesteps"]), model.input_bits
    images = data.train.levels is not None
    if (rc["crop_pad"] or rc["flip"]) and not (images and len(data.shape) == 3):
        raise QsnnError(f"crop_pad and flip augment images; dataset '{data.name}' has no image intensities")
    x_test, y_test = encoded(data.test, T, eval_samples, input_bits=bits)
    if images:
        x_train, y_train = data.train.x, data.train.y
    else:
        x_train, y_train = encoded(data.train, T, input_bits=bits)
    yt = torch.from_numpy(np.asarray(y_train))
    n_train = len(yt)
    steps_per_epoch = -(-n_train // batch_size)
    opt = _optimizer(model, lr, rc["weight_decay"])
    sched, per_batch = _schedule(opt, epochs, steps_per_epoch, rc["warmup_epochs"])
    gen = torch.Generator().manual_seed(seed)
    history = {"epoch": [], "loss": [], "train_acc": [], "test_acc": []}
    start = 0
    if resume:
        st = resume["training"]
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        history = {k: list(v) for k, v in st["history"].items()}
        start = int(st["epoch"])
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, initial=start, desc="train", unit="epoch")
    t0 = time.perf_counter() - (float(resume["training"]["seconds"]) if resume else 0.0)

    def batch_input(idx: torch.Tensor) -> torch.Tensor:
        if not images:
            return torch.from_numpy(x_train[:, idx.numpy()].astype(np.float32))  # 0/1 or b-bit values: exact
        xb = x_train[idx.numpy()]
        if rc["crop_pad"] or rc["flip"]:
            xb = augment(xb, tuple(data.shape), rc["crop_pad"], rc["flip"], gen)
        return torch.from_numpy(encode_intensities(xb, data.train.levels, T, bits).astype(np.float32))

    penalty = None
    if rc["synops_weight"]:
        def penalty(m, x, outs):
            return synops_penalty(m, x, outs, rc["synops_budget"], rc["synops_weight"])

    for epoch in range(start, epochs):
        model.set_epoch(epoch + epoch_offset)
        stats = run_epoch(model, opt, batch_input, yt, batch_size, gen, dist=dist, device=device, forward=net,
                          label_smoothing=rc["label_smoothing"], penalty=penalty, sched=sched if per_batch else None)
        if not per_batch:
            sched.step()
        test_acc = evaluate(model, x_test, dist=dist).accuracy(y_test)
        for k, v in (("epoch", epoch + 1), ("loss", stats["loss"]), ("train_acc", stats["train_acc"]),
                     ("test_acc", test_acc)):
            history[k].append(v)
        if "synops" in stats:  # the regulariser's SynOps per inference, mean over the epoch's batches
            history.setdefault("synops", []).append(stats["synops"])
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", test=f"{test_acc:.3f}")
        if on_epoch:
            on_epoch(model, {"epoch": epoch + 1, "optimizer": to_cpu(opt.state_dict()), "scheduler": sched.state_dict(),
                             "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                             "history": {k: list(v) for k, v in history.items()},
                             "seconds": time.perf_counter() - t0})
    if bar:
        bar.close()
    history["seconds"] = time.perf_counter() - t0
    if dist:
        dist.release(model)
    model.eval()
    return model.cpu(), history
