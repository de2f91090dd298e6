"""The conv QSNN on Fashion-MNIST: float ANN line, trained and deployed accuracy, T, model size, time.

Trains the named conv architecture (default: the VGG-style QSNN, channels 16 32, 4-bit uniform weights,
BatchNorm folded, T = 4, Adam lr 1e-3, 8 epochs) on all 60,000 training images, then
  * trained accuracy: the torch model's integer eval forward on all 10,000 test images,
  * deployed accuracy: the reference simulator on all 10,000 (spike-compared with torch), and real
    Lava (fixed_pt) on the first --lava-samples, spike-compared with the reference,
  * the float ANN of the same shape (ReLU, float32 weights, BatchNorm, max pooling, analog input),
  * model size per QP-SNN Eq. 16 (sum of parameters x bits) against the same network at 32 bits.
Needs `apt-get install dataset-fashion-mnist`. Writes bench/results/fashion_mnist.{json,md} and the
checkpoint bench/results/fashion_conv.pt (reused by bench/pruning.py and bench/energy.py).
Usage: python bench/fashion_mnist.py [--arch vgg|resnet] [--timesteps 4] [--epochs 8]
"""
import argparse
from pathlib import Path

import common  # the sibling bench/common.py
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


def main():
    """Parse the command line, run the bench (module docstring) and write its results under ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="vgg", choices=["vgg", "resnet"])
    ap.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ann-epochs", type=int, default=3)
    ap.add_argument("--lava-samples", type=int, default=200)
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    data = load_dataset("fashion-mnist")
    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint)
        train_s = ckpt["meta"].get("train_seconds")
        cfg = model.config
    else:
        cfg = make_config(arch=args.arch, sizes=[data.n_in, data.n_classes], input_shape=data.shape,
                          channels=args.channels, bits=args.bits, timesteps=args.timesteps)
        model, hist = train(cfg, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        train_s = hist["seconds"]
        print("test accuracy per epoch:", [round(a, 4) for a in hist["test_acc"]])
        save_checkpoint(f"{args.out}/fashion_conv.pt", cfg, model.state_dict(),
                        {"dataset": "fashion-mnist", "epochs": args.epochs, "train_seconds": train_s,
                         "test_accuracy": hist["test_acc"][-1]})
    net = model_to_ir(model)
    x, y = encoded(data.test, net.timesteps)
    torch_rec = evaluate(model, x)
    ref = simulate(net, x, progress=True)
    n = args.lava_samples
    lava = run_lava(net, x[:, :n], progress=True)
    lava_cmp = compare(ref, lava)  # over the first n samples, the ones Lava ran
    ann = float_ann(model)
    ann_acc, ann_s = common.train_ann(ann, data, args.ann_epochs)
    result = {
        "network": f"{cfg['arch']} {cfg['channels']}, {cfg['bits']}-bit {cfg['quant']}, BN folded, LIF, "
                   f"T = {cfg['timesteps']}",
        "layers": [layer.name for layer in net.layers],
        "timesteps": net.timesteps,
        "train_seconds": train_s,
        "float_ann_accuracy": ann_acc, "float_ann_epochs": args.ann_epochs, "float_ann_train_seconds": ann_s,
        "trained_accuracy": torch_rec.accuracy(y),
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
