"""Pretraining: the Ray Train data-parallel path equals the in-process loop."""

from __future__ import annotations

import torch

from ganlode.methods.nets import GANConfig
from ganlode.methods.train import TrainConfig
from ganlode.orchestrator.pipelines.pretrain import pretrain_distributed, pretrain_local

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


def _images(n=96):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def test_one_ray_train_worker_equals_in_process(ray_cluster):
    tcfg = TrainConfig(loss="wgan-gp", batch=16, n_critic=2, seed=3)
    local = pretrain_local(_images(), ARCH, tcfg, steps=4, threads=1, show_progress=False)
    dist = pretrain_distributed(_images(), ARCH, tcfg, steps=4, workers=1, threads=1, show_progress=False)
    assert _same_state(local.generator, dist.generator) == 0.0
    assert _same_state(local.critic, dist.critic) == 0.0
    # and training moved the weights at all
    from ganlode.orchestrator.pipelines.pretrain import init_gan

    g0, _ = init_gan(ARCH, tcfg.seed)
    assert _same_state(g0, local.generator) > 1e-4


def test_two_workers_average_gradients(ray_cluster):
    """Two workers start from identical weights and stay identical (averaged gradients)."""
    tcfg = TrainConfig(loss="ns-r1", batch=16, n_critic=1, seed=1)
    res = pretrain_distributed(_images(), ARCH, tcfg, steps=3, workers=2, threads=1, show_progress=False)
    assert len(res.history) >= 1 and "g_loss" in res.history[-1]
