"""Training samples per second in 1 process vs N processes (torchrun, DistributedDataParallel), same global batch.

Each side is a real `qsnn-lava train` run (N > 1: `--nproc N`, which starts torchrun; gloo on CPUs, nccl on
GPUs) on digits, the same network, seed and global batch; the time is the training loop's own (the
checkpoint's ``train_seconds``: every epoch's steps and its test evaluation, not the start of Python and
torch), so samples/s = epochs x training samples / train_seconds. torchrun gives each of its processes one
intra-op thread (OMP_NUM_THREADS=1); the 1-process run uses torch's default threads, which is what a user
gets. Also printed: whether both runs give the same integer weights (they should, docs/training.md).

Usage: python bench/ddp.py [--nproc 2] [--epochs 3] [--device cpu] [--arch mlp|vgg]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import save_result

import qsnn_lava as ql


def run(nproc: int, args, folder: Path, threads: int | None = None) -> dict:
    """One `qsnn-lava train` run in ``nproc`` processes (with ``threads`` intra-op threads each: None, torch's
    default); its checkpoint and meta."""
    out = folder / f"nproc{nproc}-{threads}.pt"
    cmd = [sys.executable, "-m", "qsnn_lava", "train", "--epochs", str(args.epochs), "--arch", args.arch,
           "--timesteps", str(args.timesteps), "--batch-size", str(args.batch_size), "--device", args.device,
           "--out", str(out), "-q", "--nproc", str(nproc)]
    if args.arch == "vgg":
        cmd += ["--channels", "8", "16"]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return {"checkpoint": out, "meta": ql.load(out).meta}


def main():
    """Time 1 and ``--nproc`` processes on the same training run, print and write bench/results/ddp.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", default="mlp", choices=["mlp", "vgg"])
    ap.add_argument("--timesteps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch (both sides)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    n_train = len(ql.load_dataset("digits").train.y)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, n, threads in (("1", 1, None), ("1x1", 1, 1), ("N", args.nproc, None)):
            r = run(n, args, Path(tmp), threads)
            sec = r["meta"]["train_seconds"]
            rows[key] = {"processes": n, "threads_per_process": threads or ("1 (torchrun)" if n > 1 else "default"),
                       "train_seconds": round(sec, 2),
                       "samples_per_s": round(args.epochs * n_train / sec, 1),
                       "test_accuracy": r["meta"]["test_accuracy"], "net": ql.convert(r["checkpoint"])}
            print(json.dumps({k: v for k, v in rows[key].items() if k != "net"}), flush=True)
        same = all(np.array_equal(a.synapse.weight, b.synapse.weight)
                   for a, b in zip(rows["1"]["net"].layers, rows["N"]["net"].layers))
    ratio = rows["N"]["samples_per_s"] / rows["1"]["samples_per_s"]
    ratio_1t = rows["N"]["samples_per_s"] / rows["1x1"]["samples_per_s"]
    note = (f"machine: {os.cpu_count()} CPUs shared with other jobs while this ran (load average "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end): the ratio is indicative only")
    print(f"{args.nproc} processes / 1 process: {ratio:.2f}x samples/s (vs 1 process with 1 thread: {ratio_1t:.2f}x); "
          f"same integer weights: {same}")
    print(note)
    save_result(args.out, "ddp.json", {
        "setup": {"dataset": "digits", "arch": args.arch, "timesteps": args.timesteps, "epochs": args.epochs,
                  "global_batch": args.batch_size, "device": args.device, "train_samples": n_train},
        "rows": [{k: v for k, v in r.items() if k != "net"} for r in rows.values()],
        "ratio": round(ratio, 2), "ratio_vs_one_thread": round(ratio_1t, 2), "same_integer_weights": same,
        "note": note})


if __name__ == "__main__":
    main()
