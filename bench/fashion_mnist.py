"""The conv QSNN on Fashion-MNIST: float ANN and float SNN lines, trained and deployed accuracy, T, size, time.

Trains the named conv architecture (default: the VGG-style QSNN, 4-bit uniform weights, BatchNorm folded,
T = 4, direct 8-bit input, learned thresholds and the recipe of docs/training.md) on all 60,000 training
images, then
  * trained accuracy: the torch model's integer eval forward on all 10,000 test images,
  * deployed accuracy: the reference simulator on all 10,000 (spike-compared with torch), and real
    Lava (fixed_pt) on the first --lava-samples, spike-compared with the reference,
  * the float ANN of the same shape (ReLU, float32 weights, BatchNorm, max pooling, analog input),
  * the float SNN of the same shape (float32 weights and membranes, BatchNorm, the same LIF (hard reset,
    decay 1/2, threshold 1), max pooling of spikes, the analog input at every step, spike-count output, or
    with --readout the output layer's voltage summed over T, as the QSNN),
  * model size per QP-SNN Eq. 16 (sum of parameters x bits) against the same network at 32 bits,
  * training wall time and CPU time (the machine may be shared: the load average is recorded too).
Needs `apt-get install dataset-fashion-mnist`. Writes bench/results/fashion_mnist.{json,md} and the
checkpoint bench/results/fashion_conv.pt (reused by bench/pruning.py and bench/energy.py).
On a shared machine run it with OMP_NUM_THREADS=1: torch's OpenMP threads spin-wait when the cores are
oversubscribed (measured: 2 s of CPU per training batch with 2 threads at load 12, 0.18 s with 1 thread).
Usage: OMP_NUM_THREADS=1 python bench/fashion_mnist.py [--arch vgg|resnet] [--timesteps 4] [--epochs 8] [--readout]
       [--input rate] [--no-learn-threshold] [--snn-epochs 0]
"""
import argparse
import os
import time
from pathlib import Path

import common  # the sibling bench/common.py
import numpy as np
import torch
from torch import nn

from qsnn_lava.converters.checkpoint import load_model, model_to_ir
from qsnn_lava.deployment.backends.lava import run as run_lava
from qsnn_lava.deployment.verify import compare
from qsnn_lava.data import encoded, load_dataset
from qsnn_lava.io import save_checkpoint
from qsnn_lava.metrics import model_size
from qsnn_lava.models import make_config
from qsnn_lava.reference import simulate
from qsnn_lava.training import evaluate, train

# The training recipe (docs/training.md) and learning rate; bench/energy_frontier.py trains with the same.
# Random crops and label smoothing stay off: they cost this small net 5.2 points in bench/ablation.py.
RECIPE = {"warmup_epochs": 0.3, "weight_decay": 5e-4, "label_smoothing": 0.0, "crop_pad": 0, "flip": True}
LR = 2e-3


def float_ann(model) -> nn.Module:
    """The float ANN of the QSNN's shape: each conv layer conv + BN + ReLU, each spiking pool a max pool,
    residual skips added before the ReLU, dense layers linear (+ ReLU but the last)."""
    from qsnn_lava.models import IdentitySkip, QuantConv, QuantDense, SumPool

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.names, mods, self.skips = [], [], {}
            for layer in model.layers:
                syn = layer.synapse
                if isinstance(syn, QuantConv):
                    c_out, c_in = syn.weight.shape[:2]
                    m = nn.Sequential(nn.Conv2d(c_in * syn.groups, c_out, syn.weight.shape[2], syn.stride,
                                                syn.padding, groups=syn.groups), nn.BatchNorm2d(c_out))
                elif isinstance(syn, SumPool):
                    m = nn.MaxPool2d(syn.k)
                elif isinstance(syn, QuantDense):
                    m = nn.Sequential(nn.Flatten(), nn.Linear(syn.weight.shape[1], syn.weight.shape[0]))
                mods.append(m)
                self.names.append(layer.name)
                self.skips[layer.name] = [src for src, s in zip(layer.skip_sources, layer.skips)
                                          if isinstance(s, IdentitySkip)]
            self.mods = nn.ModuleList(mods)
            self.shape = tuple(model.config["input_shape"])

        def forward(self, x):
            out = {}
            x = x.reshape(-1, *self.shape)
            for i, (name, m) in enumerate(zip(self.names, self.mods)):
                x = m(x)
                for src in self.skips[name]:
                    x = x + out[src]
                if i < len(self.mods) - 1 and not isinstance(m, nn.MaxPool2d):
                    x = torch.relu(x)
                out[name] = x
            return x

    return Twin()


class _Spike(torch.autograd.Function):
    """Heaviside of x > 0 forward, triangular surrogate of width 1 backward (the float SNN's spike)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1.0 - x.abs()).clamp(min=0.0)


class FloatSNN(nn.Module):
    """The float SNN of the QSNN's shape: the float ANN's conv + BN, max pool and linear modules, each conv and
    linear output fed to a float LIF (v = v / 2 + a, spike where v > 1, hard reset) for T steps, the analog
    input at every step; the logits are the output spike counts, as the QSNN classifies."""

    def __init__(self, model, timesteps: int):
        super().__init__()
        self.twin, self.T = float_ann(model), int(timesteps)
        self.readout = bool(model.config.get("readout"))  # as the QSNN: the output layer's voltage sum

    def forward(self, x):
        t, b = self.T, x.shape[0]
        s = x.reshape(1, b, *self.twin.shape).expand(t, -1, -1, -1, -1).reshape(t * b, *self.twin.shape)
        for i, m in enumerate(self.twin.mods):
            a = m(s)
            if isinstance(m, nn.MaxPool2d):  # the max of spikes is the spiking pool's output
                s = a
                continue
            a = a.reshape(t, b, *a.shape[1:])
            last_readout = self.readout and i == len(self.twin.mods) - 1
            v, out = torch.zeros_like(a[0]), []
            for step in range(t):
                v = 0.5 * v + a[step]
                if last_readout:  # no fire, no reset: the voltage is the output
                    out.append(v)
                    continue
                spk = _Spike.apply(v - 1.0)
                v = v * (1.0 - spk)
                out.append(spk)
            s = torch.stack(out).reshape(t * b, *a.shape[2:])
        return s.reshape(t, b, -1).sum(0)


def output_ties(rec, y) -> dict:
    """How the spike-count classification meets its limit: the output layer's counts over T (at most T), the
    share of samples whose top count is shared by several classes (argmax then takes the lowest index), the
    accuracy on those, and the accuracy if each tie went to the true class whenever it is among the tied."""
    counts = rec.spikes[-1].astype(np.int64).sum(0)  # [N, n_classes]
    top = counts.max(1)
    tied = (counts == top[:, None]).sum(1) > 1
    right = counts.argmax(1) == y
    among = counts[np.arange(len(y)), y] == top
    return {"tie_rate": float(tied.mean()), "accuracy_on_ties": float(right[tied].mean()) if tied.any() else None,
            "accuracy_if_ties_broken_right": float((right | (tied & among)).mean()),
            "samples_by_top_count": np.bincount(top, minlength=rec.spikes[-1].shape[0] + 1).tolist()}


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="vgg", choices=["vgg", "resnet"])
    ap.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    ap.add_argument("--input", default="direct", choices=["rate", "direct"])
    ap.add_argument("--input-bits", type=int, default=8)
    ap.add_argument("--learn-threshold", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--readout", action=argparse.BooleanOptionalAction, default=False,
                    help="the output layer a non-spiking readout (class = largest voltage sum; no count ties)")
    ap.add_argument("--warmup-epochs", type=float, default=RECIPE["warmup_epochs"])
    ap.add_argument("--weight-decay", type=float, default=RECIPE["weight_decay"])
    ap.add_argument("--label-smoothing", type=float, default=RECIPE["label_smoothing"])
    ap.add_argument("--crop-pad", type=int, default=RECIPE["crop_pad"])
    ap.add_argument("--flip", action=argparse.BooleanOptionalAction, default=RECIPE["flip"])
    ap.add_argument("--eval-samples", type=int, default=1000, help="test images for the per-epoch accuracy")
    ap.add_argument("--snn-epochs", type=int, default=1, help="epochs of the float SNN twin (0: skip it)")
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ann-epochs", type=int, default=3)
    ap.add_argument("--lava-samples", type=int, default=500)
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # the checkpoint is saved into it before the evaluation
    data = load_dataset("fashion-mnist")
    recipe = {k: getattr(args, k) for k in ("warmup_epochs", "weight_decay", "label_smoothing", "crop_pad", "flip")}
    load_before = os.getloadavg()
    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint)
        train_s, cpu_s = ckpt["meta"].get("train_seconds"), ckpt["meta"].get("train_cpu_seconds")
        cfg, recipe, per_epoch = model.config, ckpt["meta"].get("recipe"), ckpt["meta"].get("per_epoch")
    else:
        cfg = make_config(arch=args.arch, sizes=[data.n_in, data.n_classes], input_shape=data.shape,
                          channels=args.channels, bits=args.bits, timesteps=args.timesteps, input=args.input,
                          input_bits=args.input_bits, learn_threshold=args.learn_threshold, readout=args.readout)
        cpu0 = time.process_time()
        model, hist = train(cfg, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, recipe=recipe,
                            eval_samples=args.eval_samples)
        train_s, cpu_s, per_epoch = hist["seconds"], time.process_time() - cpu0, hist["test_acc"]
        print(f"test accuracy per epoch (first {args.eval_samples} test images):", [round(a, 4) for a in per_epoch])
        save_checkpoint(f"{args.out}/fashion_conv.pt", cfg, model.state_dict(),
                        {"dataset": "fashion-mnist", "epochs": args.epochs, "train_seconds": train_s,
                         "train_cpu_seconds": cpu_s, "test_accuracy": hist["test_acc"][-1], "recipe": recipe,
                         "lr": args.lr, "batch_size": args.batch_size, "per_epoch": per_epoch})
    load_after = os.getloadavg()
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps, input_bits=net.input_bits)
    torch_rec = evaluate(model, x)
    ref = simulate(net, x, progress=True)
    n = args.lava_samples
    lava = run_lava(net, x[:, :n], progress=True)
    lava_cmp = compare(ref, lava)  # over the first n samples, the ones Lava ran
    ann = float_ann(model)
    ann_acc, ann_s = common.train_ann(ann, data, args.ann_epochs)
    snn_acc, snn_s = (common.train_ann(FloatSNN(model, net.timesteps), data, args.snn_epochs) if args.snn_epochs
                      else (None, None))  # --snn-epochs 0: skip the float SNN twin
    result = {
        "network": f"{cfg['arch']} {cfg['channels']}, {cfg['bits']}-bit {cfg['quant']}, BN folded, LIF, "
                   f"T = {cfg['timesteps']}, input {cfg['input']}"
                   + (f" ({cfg['input_bits']}-bit)" if cfg["input"] == "direct" else "")
                   + (", learned thresholds" if cfg["learn_threshold"] else "")
                   + (", readout output" if cfg["readout"] else ""),
        "recipe": recipe, "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
        "layers": [layer.name for layer in net.layers],
        "vth": {layer.name: layer.neuron.vth for layer in net.layers},
        "timesteps": net.timesteps, "input_bits": net.input_bits,
        "test_accuracy_per_epoch": per_epoch,
        "train_seconds": train_s, "train_cpu_seconds": cpu_s,
        "load_average_before_after_training": [round(load_before[0], 2), round(load_after[0], 2)],
        "torch_threads": torch.get_num_threads(),  # OMP_NUM_THREADS=1 on a loaded machine: no spin-waiting
        "float_ann_accuracy": ann_acc, "float_ann_epochs": args.ann_epochs, "float_ann_train_seconds": ann_s,
        "float_snn_accuracy": snn_acc, "float_snn_epochs": args.snn_epochs, "float_snn_train_seconds": snn_s,
        "trained_accuracy": torch_rec.accuracy(y),
        "output_ties": None if cfg["readout"] else output_ties(torch_rec, y),  # a readout's voltage does not tie
        "deployed_accuracy_reference": ref.accuracy(y), "reference_samples": int(x.shape[1]),
        "torch_vs_reference_mismatches": compare(torch_rec, ref)["mismatches"],
        "deployed_accuracy_lava": lava.accuracy(y[:n]), "lava_samples": n,
        "reference_vs_lava_mismatches": lava_cmp["mismatches"],
        "lava_seconds": lava.info["seconds"],
        "model_size": model_size(net)["total"],  # QP-SNN Eq. 16 (qsnn_lava.metrics)
    }
    common.save_result(args.out, "fashion_mnist.json", result)
    md = ["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in result.items() if k != "layers"]
    (Path(args.out) / "fashion_mnist.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
