"""Foreign checkpoints as ganlode checkpoints (``ganlode import ...``), read without running Python from them.

- :mod:`.stylegan2`: rosinality's ``stylegan2-pytorch`` checkpoints (``ganlode import stylegan2``).
- :mod:`.torchscript`: any generator saved with ``torch.jit.save`` (``ganlode import torchscript``).
"""

from .stylegan2 import ImportedStyleGAN2, import_stylegan2
from .torchscript import ImportedTorchScript, import_torchscript

__all__ = ["ImportedStyleGAN2", "ImportedTorchScript", "import_stylegan2", "import_torchscript"]
