"""StyleGAN2's layers (Karras et al. 2020) in plain PyTorch, named as rosinality's ``stylegan2-pytorch``.

Every parameter and buffer carries the attribute name that repository gives it, so one of its
state dicts loads here with ``load_state_dict(strict=True)``; the maths is the same too:

- equalized learning rate: weights are stored as N(0, 1) draws and scaled at run time by
  ``lr_mul / sqrt(fan_in)``, biases by ``lr_mul``;
- the fused leaky ReLU: ``sqrt(2) * leaky_relu(x + b, 0.2)`` (the gain keeps the second moment);
- a modulated conv scales the weight's input channels by the style ``s = A(w)`` and, with
  demodulation, renormalises each output channel to unit norm:
  ``w'_oik = s_i w_oik / sqrt(sum_ik (s_i w_oik)^2 + 1e-8)``;
- resampling by FIR filtering (``upfirdn2d``) with the binomial kernel [1, 3, 3, 1], multiplied by
  ``factor^2`` after zero-insertion upsampling so that a constant image stays constant.

Only CPU-friendly torch ops are used: no custom CUDA kernels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BLUR_KERNEL: tuple[int, ...] = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------- the two primitives


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of ``x`` (NVIDIA's ``upfirdn2d``).

    Args:
        x: B x C x H x W.
        kernel: the 2-D FIR filter (kh x kw); it is convolved (flipped), as in signal processing.
        up: insert ``up - 1`` zeros after every sample, along both axes.
        down: keep every ``down``-th sample of the filtered signal.
        pad: (before, after) padding of both axes, applied after upsampling; negative values crop.

    Returns:
        B x C x H' x W' with ``H' = (H * up + before + after - kh + down) // down``.
    """
    # One depthwise conv (groups = channels), strided by ``down``: the same sums as filtering every
    # channel as its own image and then subsampling, and far cheaper to differentiate on CPU.
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x
    if up > 1:
        out = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    before, after = pad
    out = F.pad(out, [max(before, 0), max(after, 0), max(before, 0), max(after, 0)])
    out = out[:, :, max(-before, 0):out.shape[2] - max(-after, 0), max(-before, 0):out.shape[3] - max(-after, 0)]
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(out.dtype).expand(c, 1, kh, kw)
    return F.conv2d(out, weight, stride=down, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = LRELU_SLOPE,
                     scale: float = LRELU_GAIN) -> torch.Tensor:
    """``scale * leaky_relu(x + bias)``, the bias added per channel (dimension 1)."""
    if bias is not None:
        x = x + bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope=negative_slope) * scale


def make_kernel(k: Sequence[int]) -> torch.Tensor:
    """The separable 2-D filter of the 1-D taps ``k`` (outer product), normalised to sum 1."""
    k1 = torch.tensor(k, dtype=torch.float32)
    k2 = k1[None, :] * k1[:, None]
    return k2 / k2.sum()


# ---------------------------------------------------------------- resampling and elementwise layers


class PixelNorm(nn.Module):
    """Each row scaled to unit root mean square over its features (the mapping network's input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x upsampling by zero insertion and the blur filter (times factor^2: a constant stays constant)."""

    def __init__(self, kernel: Sequence[int] = BLUR_KERNEL, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    """The blur filter with a given padding; ``upsample_factor`` > 1 multiplies it by factor^2."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class FusedLeakyReLU(nn.Module):
    """The fused leaky ReLU with a learnt per-channel bias (``bias=False``: none)."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


# ---------------------------------------------------------------- equalized-learning-rate layers


class EqualLinear(nn.Module):
    """A linear layer with equalized learning rate: ``x (W * lr_mul / sqrt(in))^T + b * lr_mul``.

    ``activation=True``: the fused leaky ReLU follows (its bias is this layer's bias).
    """

    FILTER_AXIS = 0  # the weight is out x in (methods/kernels.py)

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """A conv with equalized learning rate: the weight times ``1 / sqrt(in * k^2)`` at run time."""

    FILTER_AXIS = 0  # the weight is out x in x k x k

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """A conv whose weight is modulated per sample by the style ``s = A(w)`` and, optionally, demodulated.

    ``upsample``: a stride-2 transposed conv followed by the blur (pad chosen so 2H x 2W comes out).
    """

    FILTER_AXIS = 1  # the weight is 1 x out x in x k x k

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def modulated_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The per-sample weight (B x out x in x k x k): modulated by A(w), demodulated if set."""
        style = self.modulation(w).view(w.shape[0], 1, self.in_channels, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(w.shape[0], self.out_channels, 1, 1, 1)
        return weight

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self._forward_unfused(x, w)
        # One grouped conv for the whole batch: sample b is group b, with its own weight.
        batch, _, height, width = x.shape
        k = self.kernel_size
        weight = self.modulated_weight(w)
        x = x.reshape(1, batch * self.in_channels, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * self.in_channels, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = self.blur(out.view(batch, self.out_channels, out.shape[2], out.shape[3]))
            return out
        weight = weight.reshape(batch * self.out_channels, self.in_channels, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channels, out.shape[2], out.shape[3])

    def _forward_unfused(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The same maths with one shared conv (StyleGAN2-ADA's ``fused_modconv=False``, its training path):
        the style scales the input channels, demodulation the output channels. Grouped convs with one
        group per sample are slow to differentiate on CPU; this path trains several times faster there.
        Equal to :meth:`forward` in eval mode up to float rounding (the eval path is rosinality's)."""
        style = self.modulation(w)  # B x in
        weight = self.scale * self.weight[0]  # out x in x k x k
        x = x * style.view(style.shape[0], self.in_channels, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt((weight.unsqueeze(0) * style.view(-1, 1, self.in_channels, 1, 1)).pow(2).sum([2, 3, 4]) + 1e-8)
            out = out * demod.view(-1, self.out_channels, 1, 1)
        return out


# ---------------------------------------------------------------- generator blocks


class NoiseInjection(nn.Module):
    """``x + weight * noise``: one learnt strength, the noise (B x 1 x H x W) given or drawn fresh."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = x.shape
            noise = x.new_empty(batch, 1, height, width).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learnt 4 x 4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise, then the fused leaky ReLU with its bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise=noise))


class ToRGB(nn.Module):
    """A modulated 1x1 conv (no demodulation) to image channels, plus the upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, image_channels: int = 3, upsample: bool = True,
                 blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, image_channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


# ---------------------------------------------------------------- discriminator blocks


class ConvLayer(nn.Sequential):
    """[blur,] equalized conv [, fused leaky ReLU]: ``downsample`` blurs, then convolves with stride 2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[int] = BLUR_KERNEL, bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second halves the resolution) plus a 1x1 downsampled skip, summed / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[int] = BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)
