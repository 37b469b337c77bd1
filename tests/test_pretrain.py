"""Pretraining: the Ray Train data-parallel path equals the in-process loop."""

from __future__ import annotations

import pytest
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


def test_select_every_keeps_the_best_validation_step_and_changes_no_draw():
    """--select-every scores the saved form every k steps and after the last, keeps the best on the
    validation split, and leaves training alone: the kept weights are those of a plain run that
    stops at the chosen step, bit for bit, and that run scores what the selection recorded."""
    from ganlode.orchestrator.data.spec import load_target
    from ganlode.orchestrator.pipelines.pretrain import Selection

    spec = "mnist5k:3@40"
    images = load_target(spec, seed=2).images
    tcfg = TrainConfig(loss="ns-r1", batch=16, seed=2)
    picked = pretrain_local(images, ARCH, tcfg, steps=5, threads=1, show_progress=False,
                            selection=Selection(spec, every=2, seed=2))
    scores = picked.selection["scores"]
    assert [s["step"] for s in scores] == [2, 4, 5]
    assert len({s["val_fid"] for s in scores}) == 3  # each step's own weights were scored
    best = min(scores, key=lambda s: s["val_fid"])
    assert picked.selection["step"] == best["step"] and picked.selection["split"] == "val"
    plain = pretrain_local(images, ARCH, tcfg, steps=best["step"], threads=1, show_progress=False)
    assert plain.selection is None
    assert _same_state(picked.generator, plain.generator) == 0.0
    assert _same_state(picked.critic, plain.critic) == 0.0
    assert Selection(spec, every=2, seed=2).scorer()(plain.generator) == pytest.approx(best["val_fid"], abs=1e-3)


def test_a_killed_pretraining_run_continues_bit_for_bit(tmp_path):
    """The state saved every `every` steps, picked up by a longer run with the same settings, gives the
    uninterrupted run's weights, history and validation choice; other settings are refused in one line."""
    from ganlode.orchestrator.data.spec import load_target
    from ganlode.orchestrator.errors import UserError
    from ganlode.orchestrator.pipelines.pretrain import Resumable, Selection

    spec = "mnist5k:3@40"
    images = load_target(spec).images
    tcfg = TrainConfig(loss="ns-r1", batch=16, seed=1, ema_decay=0.9)
    sel = Selection(spec, every=2, seed=1)
    state = Resumable(str(tmp_path / "state.pt"), {"settings": "these"}, every=2)
    pretrain_local(images, ARCH, tcfg, steps=3, threads=1, show_progress=False, selection=sel, resumable=state)
    assert (tmp_path / "state.pt").exists()  # saved at step 2 (the "killed" run never published)
    resumed = pretrain_local(images, ARCH, tcfg, steps=5, threads=1, show_progress=False, selection=sel,
                             resumable=state)
    straight = pretrain_local(images, ARCH, tcfg, steps=5, threads=1, show_progress=False, selection=sel)
    assert _same_state(resumed.generator, straight.generator) == 0.0
    assert _same_state(resumed.critic, straight.critic) == 0.0
    assert resumed.history == straight.history and resumed.selection == straight.selection
    other = Resumable(str(tmp_path / "state.pt"), {"settings": "others"}, every=2)
    with pytest.raises(UserError, match="other settings"):
        pretrain_local(images, ARCH, tcfg, steps=5, threads=1, show_progress=False, resumable=other)
    with pytest.raises(UserError, match="raise --steps"):
        pretrain_local(images, ARCH, tcfg, steps=2, threads=1, show_progress=False, resumable=state)
