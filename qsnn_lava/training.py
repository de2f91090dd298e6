"""Quantization-aware BPTT on the deployed integer dynamics.

The forward pass is the integer network (float tensors holding integers, see qsnn_lava.dynamics and
``QSNN.float32_exact``);
gradients flow through straight-through rounding and the triangular surrogate spike. The loss is
cross-entropy on the output layer's spike counts, the same quantity deployed inference classifies by,
so the model that is evaluated is exactly the model that is deployed.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, encoded
from .distributed import Context, to_cpu
from .models import QSNN, build_model
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
    chunks = []
    with torch.no_grad():
        for lo in range(0, max(part.shape[1], 1), batch_size):  # an empty share still gives empty arrays
            layer_out = model(torch.from_numpy(part[:, lo:lo + batch_size].astype(np.int64)).to(device))
            chunks.append([s.cpu().numpy().astype(np.uint8) for s in layer_out])
    model.to(home)
    outs = [np.concatenate(per_layer, axis=1) for per_layer in zip(*chunks)]
    if dist:
        outs = dist.gather(outs)
    return Record("torch", [layer.name for layer in model.layers], outs, info={"seconds": time.perf_counter() - t0})


def run_epoch(model, opt, xt: torch.Tensor, yt: torch.Tensor, batch_size: int, gen: torch.Generator,
              dist: Context | None = None, device=None, forward=None):
    """One epoch of BPTT on the deployed dynamics: ``model`` (train mode) on the spikes ``xt`` [T, N, n_in]
    (float) in batches shuffled by ``gen``, cross-entropy of the output layer's spike counts against ``yt``,
    one ``opt`` step per batch. Returns (mean loss, training accuracy). Used by ``train`` and by
    ``irmodel.finetune``.

    With ``dist`` (several processes) every process draws the same permutation and runs its contiguous share
    of each global batch, its loss weighted so that the averaged gradient is the global batch's; ``forward``
    is the module to call (the DDP wrapper of ``model``; default ``model``); batches move to ``device``."""
    model.train()
    forward = model if forward is None else forward
    perm = torch.randperm(len(yt), generator=gen)
    total, correct, loss_sum = 0, 0, 0.0
    for lo in range(0, len(perm), batch_size):
        idx = perm[lo:lo + batch_size]
        mine = idx[dist.shard(len(idx))] if dist else idx  # this process's share of the global batch
        x, y = xt[:, mine].to(device), yt[mine].to(device)
        counts = forward(x)[-1].sum(0)
        loss = F.cross_entropy(counts, y) if len(mine) else counts.sum() * 0.0
        opt.zero_grad()
        (loss * dist.weight(len(mine), len(idx)) if dist else loss).backward()
        opt.step()
        loss_sum += loss.item() * len(mine)
        correct += int((counts.argmax(-1) == y).sum())
        total += len(mine)
    if dist:
        loss_sum, correct, total = dist.sum_numbers(loss_sum, correct, total)
    return loss_sum / total, correct / total


def train(cfg: dict, data: Dataset, epochs: int, batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
          progress: bool = True, log=print, resume: dict | None = None, on_epoch=None,
          init_state: dict | None = None, epoch_offset: int = 0, device=None,
          dist: Context | None = None) -> tuple[QSNN, dict]:
    """Train ``epochs`` epochs in total. ``resume`` (a checkpoint dict with the ``"training"`` entry that
    ``on_epoch`` receives: epoch, optimizer, scheduler, generator, torch_rng, history, seconds) continues an interrupted run where it stopped, with the same optimizer, schedule,
    shuffling and history, so the result equals an uninterrupted run. ``on_epoch(model, state)`` is
    called after every epoch (the CLI saves a resumable checkpoint there). ``init_state`` starts from
    these weights instead of a random init (fine-tuning, e.g. a pruned network); ``epoch_offset`` is added to
    the epoch given to per-epoch schedules (the sigmoid quantizer's temperature continues, not restarts).
    ``device``: where to compute (a torch device or name; default the CPU). ``dist``: this process's
    ``distributed.Context`` when several train together (torchrun): ``batch_size`` is then the global batch,
    each process computes its share of it, and the result equals one process's up to the order of float
    sums (docs/training.md). The model is returned on the CPU, in eval mode."""
    set_seed(seed)
    device = torch.device("cpu") if device is None else torch.device(device)
    model = build_model(cfg, resume["state_dict"] if resume else init_state).to(device)
    net = dist.wrap(model) if dist else model  # the forward that averages gradients over the processes
    T = int(cfg["timesteps"])
    x_train, y_train = encoded(data.train, T)
    x_test, y_test = encoded(data.test, T)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
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
    if progress and (dist is None or dist.is_main):
        from tqdm import tqdm
        bar = tqdm(total=epochs, initial=start, desc="train", unit="epoch")
    t0 = time.perf_counter() - (float(resume["training"]["seconds"]) if resume else 0.0)
    xt, yt = torch.from_numpy(x_train.astype(np.float32)), torch.from_numpy(y_train)  # 0/1: exact
    for epoch in range(start, epochs):
        model.set_epoch(epoch + epoch_offset)
        loss, train_acc = run_epoch(model, opt, xt, yt, batch_size, gen, dist=dist, device=device, forward=net)
        sched.step()
        test_acc = evaluate(model, x_test, dist=dist).accuracy(y_test)
        for k, v in (("epoch", epoch + 1), ("loss", loss), ("train_acc", train_acc), ("test_acc", test_acc)):
            history[k].append(v)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", test=f"{test_acc:.3f}")
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
