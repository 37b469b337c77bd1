"""StyleGAN2 (Karras et al. 2020) in plain PyTorch, with the parameter names of rosinality's
``stylegan2-pytorch``, so its checkpoints load as they are (``ganlode import stylegan2``).

Modules: ``layers`` (upfirdn2d, the fused leaky ReLU, equalized and modulated layers, the blocks),
``model`` (the config, the generator with its mapping and synthesis networks, the discriminator).
"""

from .layers import fused_leaky_relu, upfirdn2d
from .model import Discriminator, Generator, StyleGAN2Config, build_stylegan2

__all__ = ["Discriminator", "Generator", "StyleGAN2Config", "build_stylegan2", "fused_leaky_relu", "upfirdn2d"]
