"""Foreign checkpoints as ganlode checkpoints (``ganlode import ...``), read without running their code.

- :mod:`.stylegan2`: rosinality's ``stylegan2-pytorch`` checkpoints (``ganlode import stylegan2``).
"""

from .stylegan2 import ImportedStyleGAN2, import_stylegan2

__all__ = ["ImportedStyleGAN2", "import_stylegan2"]
