"""Nets and losses: shapes, the critic's block structure, penalties with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganlode.methods import losses
from ganlode.methods.nets import Critic, GANConfig, build_gan


@pytest.mark.parametrize("res,ch", [(28, 1), (32, 1), (28, 3), (32, 3)])
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


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="resolution"):
        GANConfig(resolution=64)
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
