"""DiffAugment: closed forms of each transform, gradients through them, and the trainer's use of them."""

import copy

import pytest
import torch

from ganlode.methods import augment, seeding
from ganlode.methods.nets import Critic, GANConfig, Generator
from ganlode.methods.train import GANTrainer, TrainConfig


def test_policy_parsing_accepts_subsets_and_refuses_unknown_or_repeated_names():
    assert augment.parse_policy("") == () and augment.parse_policy("none") == ()
    assert augment.parse_policy("translation, color") == ("translation", "color")
    for bad in ("colour", "color,color", "translation,,cutout"):
        with pytest.raises(ValueError, match="comma-separated subset of color, translation, cutout"):
            augment.parse_policy(bad)
    with pytest.raises(ValueError, match="augmentation policy 'flip'"):
        TrainConfig(augment="flip")


def test_translate_moves_every_pixel_by_its_shift_and_brings_in_zeros():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6) + 1
    out = augment.translate(x, torch.tensor([2, -1]), torch.tensor([-3, 0]))
    # image 0: down 2, left 3; image 1: up 1
    assert torch.equal(out[0, :, 2:, :3], x[0, :, :3, 3:])
    assert out[0, :, :2].abs().sum() == 0 and out[0, :, :, 3:].abs().sum() == 0
    assert torch.equal(out[1, :, :4], x[1, :, 1:]) and out[1, :, 4].abs().sum() == 0
    assert torch.equal(augment.translate(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)), x)


def test_cutout_zeroes_exactly_the_square_clipped_at_the_edges():
    x = torch.ones(2, 1, 8, 8)
    out = augment.cutout(x, torch.tensor([4, 0]), torch.tensor([4, 7]), 4)
    assert out[0, 0, 2:6, 2:6].sum() == 0 and out[0].sum() == 64 - 16
    assert out[1, 0, :2, 5:].sum() == 0 and out[1].sum() == 64 - 6  # rows -2..1, cols 5..8 clipped to 2 x 3


def test_color_has_its_closed_form():
    x = torch.randn(3, 3, 4, 4)
    one, zero = torch.ones(3, 1, 1, 1), torch.zeros(3, 1, 1, 1)
    assert torch.allclose(augment.color(x, zero + 0.25, one, one), x + 0.25)
    grey = augment.color(x, zero, zero, one)  # saturation 0: every channel is the pixel's channel mean
    assert torch.allclose(grey, x.mean(1, keepdim=True).expand_as(x))
    flat = augment.color(x, zero, one, zero)  # contrast 0: each image is its own mean
    assert torch.allclose(flat, x.mean((1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)


def test_the_transform_passes_gradients_and_is_fixed_by_its_generator():
    policy = augment.parse_policy("color,translation,cutout")
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    a = augment.diff_augment(x, policy, seeding.generator(0, "t"))
    b = augment.diff_augment(x, policy, seeding.generator(0, "t"))
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and (x.grad != 0).all()  # color's means reach every pixel
    # Without color, a pixel that translation or cutout dropped gets no gradient, every other one gets 1.
    x.grad = None
    augment.diff_augment(x, augment.parse_policy("translation,cutout"), seeding.generator(0, "t")).sum().backward()
    assert set(x.grad.unique().tolist()) == {0.0, 1.0} and 0.1 < (x.grad == 0).float().mean() < 0.6


def _trainer(augment_policy: str) -> GANTrainer:
    cfg = GANConfig(resolution=32, channels=3, latent_dim=8, g_width=8, d_width=8)
    g, d = seeding.seeded_init(0, lambda: (Generator(cfg), Critic(cfg)))
    images = torch.rand(32, 3, 32, 32, generator=seeding.generator(0, "images")) * 2 - 1
    return GANTrainer(g, d, images, TrainConfig(loss="ns-r1", batch=8, n_critic=1, augment=augment_policy))


def test_the_trainer_augments_what_the_critic_sees_and_resumes_bit_for_bit():
    plain, aug = _trainer(""), _trainer("translation,color")
    seen = []
    aug.D.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    aug.critic_step()
    real_batch = torch.randint(len(plain.images), (8,), generator=seeding.generator(0, "gan-train", 0))
    assert not torch.allclose(seen[0], plain.images[real_batch])  # the critic saw transformed reals
    plain.step(), aug.step()
    assert any(not torch.equal(p, q) for p, q in zip(plain.G.parameters(), aug.G.parameters()))
    # A resumed trainer continues on the same augmentation draws.
    state = copy.deepcopy(aug.state_dict())  # as a saved file would be: no storage shared
    again = _trainer("translation,color")
    again.load_state_dict(state)
    aug.step(), again.step()
    assert all(torch.equal(p, q) for p, q in zip(aug.G.parameters(), again.G.parameters()))
