"""qsnn-lava: quantized spiking networks trained in PyTorch, deployed bit-exactly to Lava and Loihi 2.

``import qsnn_lava as ql`` gives every command of the ``qsnn-lava`` CLI as a function (``qsnn_lava.api``)
and the IR's building blocks. Names load on first use, so importing the package is cheap and never
imports torch or Lava by itself.

Example:
    >>> import qsnn_lava as ql
    >>> net = ql.Network((2,), [ql.Layer("out", ql.Dense([[3, -1]]), ql.LIF(1, vth=1, du=4095, dv=4095))], 3)
    >>> ql.simulate(net, [[[1, 0]], [[0, 1]], [[1, 1]]]).spikes[-1].ravel().tolist()
    [1, 0, 1]
"""
__version__ = "0.1.0"

__all__ = [
    # files
    "load", "save",
    # the journey: train -> convert -> simulate / verify -> deploy -> energy, pruning and fine-tuning
    "train", "convert", "simulate", "verify", "deploy", "energy", "prune", "finetune", "demo",
    "design_rules", "export_netx", "import_netx", "export_nir", "import_nir",
    # data
    "load_dataset", "encode", "read_spikes",
    # results
    "Record", "VerifyResult", "DeployResult", "EnergyReport", "DemoResult",
    # the IR
    "Network", "Layer", "Dense", "Conv", "LIF", "QMem", "Readout", "Skip",
    # errors and names
    "QsnnError", "backend_names", "__version__",
]

_FROM = {
    "Record": "record", "QsnnError": "errors",
    "Network": "ir", "Layer": "ir", "Dense": "ir", "Conv": "ir", "LIF": "ir", "QMem": "ir", "Readout": "ir",
    "Skip": "ir",
}


def __getattr__(name):
    if name in __all__:
        import importlib

        module = importlib.import_module(f".{_FROM.get(name, 'api')}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qsnn_lava' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(__all__))
