"""Nets and losses: shapes, the critic's block structure, penalties with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganlode.methods import losses
from ganlode.methods.nets import Critic, GANConfig, build_gan

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny nets: one thread is far faster on busy cores


SIZES = [(res, ch) for res in (28, 32, 64, 128) for ch in (1, 3)]


@pytest.mark.parametrize("res,ch", SIZES)
def test_shapes_and_range(res, ch):
    cfg = GANConfig(resolution=res, channels=ch, latent_dim=8, g_width=8, d_width=8)
    g, d = build_gan(cfg)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, ch, res, res)
    assert x.abs().max() <= 1.0
    assert d(x).shape == (5,)


def test_generator_has_batchnorm_and_critic_has_none():
    g, d = build_gan(GANConfig())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in g.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())


def test_critic_blocks_are_ordered_and_compose_to_forward():
    d = Critic(GANConfig(d_width=8))
    assert d.num_blocks == 3
    x = torch.randn(4, 1, 28, 28)
    feats = d.features(x)
    assert [f.shape[1:] for f in feats] == [(8, 14, 14), (16, 7, 7), (32, 4, 4)]
    # forward is exactly the blocks in order followed by the head
    assert torch.equal(d(x), d.head(feats[-1].flatten(1)).squeeze(1))
    # block k's input is block k-1's output: the lowest k blocks are a prefix
    assert torch.equal(d.blocks[1](feats[0]), feats[1])


@pytest.mark.parametrize("res,ch", SIZES)
def test_critic_blocks_halve_to_4x4_at_every_size(res, ch):
    w = 4
    d = Critic(GANConfig(resolution=res, channels=ch, d_width=w))
    depth = int(math.log2(res // 4)) + (res == 28)  # one block per halving down to 4x4 (28 -> 14 -> 7 -> 4)
    assert d.num_blocks == depth and len(d.blocks) == depth
    feats = d.features(torch.randn(2, ch, res, res))
    sides = [(res + 2 ** k - 1) // 2 ** k if k < depth else 4 for k in range(1, depth + 1)]
    assert [tuple(f.shape[1:]) for f in feats] == [(w * min(2 ** k, 8), s, s) for k, s in enumerate(sides)]
    assert torch.equal(d(torch.zeros(1, ch, res, res)), d.head(d.features(torch.zeros(1, ch, res, res))[-1].flatten(1)).squeeze(1))
    assert torch.equal(d.blocks[1](feats[0]), feats[1])


@pytest.mark.parametrize("res", [28, 64, 128])
def test_output_and_latent_folds_are_exact_at_every_size(res):
    torch.manual_seed(0)
    g = build_gan(GANConfig(resolution=res, channels=3, latent_dim=6, g_width=4, d_width=4))[0]
    g.train()
    g(torch.randn(16, 6))  # real BatchNorm statistics
    g.eval()
    z = torch.randn(3, 6)
    scale, shift = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([0.1, -0.2, 0.3])
    with torch.no_grad():
        folded = g.fold_output_affine(scale, shift)(z)
        assert torch.allclose(folded, torch.tanh(scale.view(1, 3, 1, 1) * g.pre_output(z) + shift.view(1, 3, 1, 1)), atol=1e-5)
        mean, chol = torch.randn(6), torch.tril(torch.randn(6, 6)) * 0.3 + torch.eye(6)
        assert torch.allclose(g.fold_latent_affine(mean, chol)(z), g(mean + z @ chol.T), atol=1e-4)
    assert g.pre_output(z).shape == (3, 3, res, res)


# The original 28/32 px nets, pinned: parameter names and shapes (g_width = d_width = 8, 1 channel at 28 px)
# and a fresh net's output (torch.manual_seed(0), widths 8, z from seed 1), computed before 64/128 px existed.
G28_SHAPES = {"fc.0.weight": (784, 8), "fc.1.weight": (784,), "fc.1.bias": (784,), "fc.1.running_mean": (784,),
              "fc.1.running_var": (784,), "fc.1.num_batches_tracked": (), "up.0.weight": (16, 8, 4, 4),
              "up.1.weight": (8,), "up.1.bias": (8,), "up.1.running_mean": (8,), "up.1.running_var": (8,),
              "up.1.num_batches_tracked": (), "up.3.weight": (8, 4, 4, 4), "up.4.weight": (4,), "up.4.bias": (4,),
              "up.4.running_mean": (4,), "up.4.running_var": (4,), "up.4.num_batches_tracked": (),
              "up.6.weight": (1, 4, 3, 3), "up.6.bias": (1,)}
D28_SHAPES = {"blocks.0.0.weight": (8, 1, 4, 4), "blocks.0.0.bias": (8,), "blocks.1.0.weight": (16, 8, 4, 4),
              "blocks.1.0.bias": (16,), "blocks.2.0.weight": (32, 16, 3, 3), "blocks.2.0.bias": (32,),
              "head.weight": (1, 512), "head.bias": (1,)}
FRESH = {(28, 1): (-8.29256418341538, [0.04525389522314072, 0.04694245755672455, 0.047308385372161865]),
         (32, 3): (-599.9081675985362, [-0.05410124734044075, -0.05514688417315483, -0.05553130432963371])}


def test_28_and_32_px_nets_are_unchanged():
    g, d = build_gan(GANConfig(resolution=28, channels=1, latent_dim=8, g_width=8, d_width=8))
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == G28_SHAPES
    assert {k: tuple(v.shape) for k, v in d.state_dict().items()} == D28_SHAPES
    g32, d32 = build_gan(GANConfig(resolution=32, channels=3, latent_dim=8, g_width=8, d_width=8))
    assert list(g32.state_dict()) == list(G28_SHAPES) and list(d32.state_dict()) == list(D28_SHAPES)
    for (res, ch), (total, scores) in FRESH.items():
        torch.manual_seed(0)
        g, d = build_gan(GANConfig(resolution=res, channels=ch, latent_dim=8, g_width=8, d_width=8))
        g.eval()
        z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            x = g(z)
            assert x.double().sum().item() == pytest.approx(total, abs=1e-3)
            assert d(x).tolist() == pytest.approx(scores, abs=1e-6)


# zoo:digits-0to4 (28 px) on 4 latents from torch.Generator().manual_seed(0): each sample's pixel sum and
# the critic's scores, computed before 64/128 px existed.
ZOO_SUMS = [-606.3956258930266, -531.2564758927329, -642.4143341593444, -491.24264367623255]
ZOO_SCORES = [-0.374781, 0.750893, 0.175977, -1.280446]


def test_zoo_checkpoint_loads_strictly_and_samples_as_before():
    from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint

    ck = load_checkpoint("zoo:digits-0to4")  # strict: every key and shape must match the architecture
    g, d = ck.generator, ck.critic
    z = torch.randn(4, g.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g(z)
        assert x.double().flatten(1).sum(1).tolist() == pytest.approx(ZOO_SUMS, abs=1e-3)
        assert d(x).tolist() == pytest.approx(ZOO_SCORES, abs=1e-5)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="resolution must be one of 28, 32, 64, 128, got 48"):
        GANConfig(resolution=48)
    with pytest.raises(ValueError, match="channels"):
        GANConfig(channels=2)


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is known."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def test_gradient_penalty_closed_form():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = losses.gradient_penalty(Linear(w), real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (5 - 1) ** 2)


def test_gradient_penalty_is_zero_for_unit_gradient():
    w = torch.tensor([0.6, 0.8])  # ||w|| = 1
    gp = losses.gradient_penalty(Linear(w), torch.randn(4, 2), torch.randn(4, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_is_differentiable_in_critic_params():
    crit = Linear(torch.tensor([3.0, 4.0]))
    losses.gradient_penalty(crit, torch.randn(4, 2), torch.randn(4, 2), weight=1.0).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    expected = 2 * (5 - 1) * torch.tensor([3.0, 4.0]) / 5
    assert torch.allclose(crit.w.grad, expected)


def test_r1_closed_form():
    w = torch.tensor([3.0, 4.0])
    r1 = losses.r1_penalty(Linear(w), torch.randn(7, 2), gamma=2.0)
    assert r1.item() == pytest.approx(0.5 * 2.0 * 25.0)


def test_wgan_and_ns_losses():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert losses.wgan_critic_loss(d_real, d_fake).item() == pytest.approx(-1.0 - 2.0)
    assert losses.wgan_generator_loss(d_fake).item() == pytest.approx(1.0)
    # at D = 0 both logistic terms are log 2
    z = torch.zeros(3)
    assert losses.ns_critic_loss(z, z).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert losses.ns_generator_loss(z).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
