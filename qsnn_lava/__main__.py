"""``python -m qsnn_lava ...`` is the ``qsnn-lava`` command (also under torchrun)."""
import sys

from .cli import main

sys.exit(main())
