"""Pieces the benchmarks share: the repo on sys.path, a trained digits network, and writing results."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.checkpoint import model_to_ir  # noqa: E402
from qsnn_lava.data import encoded, load_dataset  # noqa: E402
from qsnn_lava.io import write_json  # noqa: E402
from qsnn_lava.models import make_config  # noqa: E402
from qsnn_lava.training import train  # noqa: E402


def digits_network(epochs: int, samples: int):
    """The demo's 64-256-10 QSNN trained for ``epochs``, as an IR, and the first ``samples`` test inputs."""
    data = load_dataset("digits")
    model, _ = train(make_config(), data, epochs=epochs, progress=False)
    net = model_to_ir(model)
    x, _ = encoded(data.test, net.timesteps, min(samples, len(data.test.y)))
    return net, x


def save_result(out: str, name: str, result: dict) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / name, result)
