"""Multi-source MineGAN maths (methods/multisource.py): closed forms, invariants, the reference loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganlode.methods.miner import MinedGenerator, Miner, MinerConfig
from ganlode.methods.multisource import (
    MinedMixture,
    MultiSourceConfig,
    MultiSourceMiner,
    generator_loss,
    selector_shares,
    selector_update,
    supersample,
    supersample_images,
)
from ganlode.methods.nets import GANConfig, build_gan

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Float sums depend on the thread count, and tiny ops stall in a thread pool on a busy box:
    pin one thread (and restore the count for other tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def problem(n_sources: int = 2, seed: int = 0):
    """Tiny random sources, a critic and a target set (tensors only)."""
    gens, critic = [], None
    for i in range(n_sources):
        torch.manual_seed(100 + i)
        g, d = build_gan(ARCH)
        gens.append(g.state_dict())
        critic = critic or d.state_dict()
    images = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return [ARCH] * n_sources, gens, critic, images


# ---------------------------------------------------------------- supersample and loss


def test_supersample_picks_argmax_per_row_and_lowest_index_on_ties():
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    winners = supersample(scores)
    for b in range(50):
        assert winners[b] == max(range(4), key=lambda i: (scores[i, b].item(), -i))
    tied = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.5, 2.0]])
    assert supersample(tied).tolist() == [0, 1]
    fakes = [torch.full((2, 1, 3, 3), float(i)) for i in range(3)]
    assert supersample_images(fakes, torch.tensor([2, 0]))[:, 0, 0, 0].tolist() == [2.0, 0.0]


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_loss_gradient_reaches_only_winning_rows(loss):
    scores = torch.randn(3, 16, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    winners = supersample(scores.detach())
    value = generator_loss(scores, winners, loss)
    best = scores.detach().max(0).values
    expected = -best.mean() if loss == "wgan-gp" else torch.nn.functional.softplus(-best).mean()
    assert float(value.detach()) == pytest.approx(float(expected), abs=1e-6)
    (grad,) = torch.autograd.grad(value, scores)
    won = torch.zeros_like(grad, dtype=torch.bool)
    won[winners, torch.arange(16)] = True
    assert torch.all(grad[~won] == 0)
    # d/ds of -s/B is -1/B; of softplus(-s)/B it is -sigmoid(-s)/B
    closed = torch.full((16,), -1 / 16) if loss == "wgan-gp" else -torch.sigmoid(-best) / 16
    assert torch.allclose(grad[winners, torch.arange(16)], closed, atol=1e-7)


def test_image_gradients_of_a_step_are_zero_outside_the_winning_rows():
    arches, gens, critic, images = problem(3)
    cfg = MultiSourceConfig(mining_steps=2, finetune_steps=0, batch=12, loss="wgan-gp")
    ref = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    u = ref.selector.draw_latent()
    xs = [s.sample(u, 1) for s in ref.sources]
    result = ref.selector.step(xs)
    for i, grad in enumerate(result.grads):
        rows = grad.flatten(1).abs().sum(1) > 0
        assert torch.equal(rows, result.loss_winners == i)  # a winning row always gets some gradient here


# ---------------------------------------------------------------- selector


def test_shares_are_non_negative_and_sum_to_one():
    assert selector_shares(torch.zeros(0, 4, dtype=torch.int64), 4).tolist() == [0.25] * 4
    gen = torch.Generator().manual_seed(3)
    window = torch.zeros(0, 5, dtype=torch.int64)
    for _ in range(40):
        winners = torch.randint(0, 3, (int(torch.randint(1, 30, (1,), generator=gen)),), generator=gen)
        window = selector_update(window, winners, 5, size=1000)
        p = selector_shares(window, 5)
        assert torch.all(p >= 0) and float(p.sum()) == pytest.approx(1.0, abs=1e-12)
        assert p[3] == 0 and p[4] == 0  # never-winning sources get nothing


def test_window_keeps_the_last_1000_batches():
    window = torch.zeros(0, 2, dtype=torch.int64)
    # batch k (0-based): source 1 wins k % 5 of 4 rows... first 5 batches all source 0
    history = []
    for k in range(1005):
        ones = 0 if k < 5 else 3
        winners = torch.tensor([1] * ones + [0] * (4 - ones))
        history.append([4 - ones, ones])
        window = selector_update(window, winners, 2, size=1000)
    assert window.shape == (1000, 2)
    assert window.tolist() == history[-1000:]
    assert selector_shares(window, 2).tolist() == pytest.approx([0.25, 0.75], abs=1e-12)  # the all-0 batches are gone


# ---------------------------------------------------------------- sampling the mined model


class _Constant(nn.Module):
    """A stand-in generator whose every image is the constant ``value``."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.latent_dim = 4

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0], 1, 2, 2), self.value)


def test_sampling_frequencies_follow_p():
    p = torch.tensor([0.15, 0.6, 0.25], dtype=torch.float64)
    sources = [MinedGenerator(_Constant(i / 10), Miner(MinerConfig(latent_dim=4, input_dim=3, hidden=4))) for i in range(3)]
    mixture = MinedMixture(sources, p)
    n = 6000
    x = mixture.sample(n, torch.Generator().manual_seed(4))
    counts = torch.stack([(x[:, 0, 0, 0] == i / 10).sum() for i in range(3)]).double()
    assert int(counts.sum()) == n
    sd = torch.sqrt(p * (1 - p) / n)  # binomial sd of a frequency
    assert torch.all((counts / n - p).abs() <= 4 * sd), (counts / n, p)
    with pytest.raises(ValueError, match="sum to 1"):
        MinedMixture(sources, torch.tensor([0.5, 0.6, -0.1]))


# ---------------------------------------------------------------- the in-process reference


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mining_freezes_generators_and_finetuning_moves_them():
    arches, gens, critic, images = problem(2)
    cfg = MultiSourceConfig(mining_steps=3, finetune_steps=2, batch=8)
    ref = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    miner0 = {k: v.clone() for k, v in ref.sources[0].M.state_dict().items()}
    ref.run_until(3)
    for s, g in zip(ref.sources, gens):
        assert _state_equal(s.G.state_dict(), g)  # weights and BatchNorm statistics, bit for bit
    assert not _state_equal(ref.sources[0].M.state_dict(), miner0)
    rows = ref.run_until(5)
    assert [r["stage"] for r in rows] == ["finetune", "finetune"]
    assert not _state_equal(ref.sources[0].G.state_dict(), gens[0])


def test_a_reloaded_state_continues_exactly_like_an_uninterrupted_run():
    arches, gens, critic, images = problem(2)
    cfg = MultiSourceConfig(mining_steps=4, finetune_steps=4, batch=8, loss="wgan-gp", seed=5)
    straight = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    straight.run_until(3)
    state = straight.state_tensors()
    rows = straight.run_until(8)
    resumed = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    resumed.load_state_tensors(state)
    assert resumed.steps_done == 3
    assert resumed.run_until(8) == rows  # losses and shares identical, mining and fine-tuning steps
    assert _state_equal(resumed.state_tensors(), straight.state_tensors())
    assert math.isclose(sum(resumed.shares()), 1.0)


# ---------------------------------------------------------------- critic steps, warm-up, row sampling, routing

def _adam_steps(opt: torch.optim.Optimizer) -> int:
    return int(next(iter(opt.state.values()))["step"])


def test_n_critic_steps_the_critic_k_times_on_fresh_rows_and_sends_one_batch_of_gradient():
    arches, gens, critic, images = problem(2)
    cfg = MultiSourceConfig(mining_steps=2, finetune_steps=0, batch=8, n_critic=3)
    ref = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    assert ref.selector.draw_latent().shape == (24, cfg.miner_input_dim)
    ref.run_until(2)
    assert _adam_steps(ref.selector.opt) == 6  # 3 critic steps per mining step
    assert _adam_steps(ref.sources[0].opt_miner) == 2
    u = ref.selector.draw_latent()
    xs = [s.sample(u, 3) for s in ref.sources]
    assert xs[0].shape[0] == 24 and ref.sources[0]._x.shape[0] == 8  # the graph covers the last batch only
    result = ref.selector.step(xs)
    assert [g.shape[0] for g in result.grads] == [8, 8]


def test_warmup_delays_the_count_and_a_run_without_it_counts_from_step_one():
    arches, gens, critic, images = problem(2)
    warm = MultiSourceMiner.build(arches, gens, critic, images, MultiSourceConfig(mining_steps=5, finetune_steps=0,
                                                                                 batch=8, warmup=3))
    warm.run_until(5)
    assert warm.selector.window.shape == (2, 2)  # steps 4 and 5 only
    cold = MultiSourceMiner.build(arches, gens, critic, images, MultiSourceConfig(mining_steps=5, finetune_steps=0, batch=8))
    cold.run_until(5)
    assert cold.selector.window.shape == (5, 2)


def test_rows_drawn_from_the_shares_send_gradient_only_to_sources_with_a_share():
    arches, gens, critic, images = problem(3)
    cfg = MultiSourceConfig(mining_steps=3, finetune_steps=0, batch=16, rows="shares", row_shares=(0.75, 0.0, 0.25))
    ref = MultiSourceMiner.build(arches, gens, critic, images, cfg)
    u = ref.selector.draw_latent()
    result = ref.selector.step([s.sample(u, 1) for s in ref.sources])
    assert float(result.grads[1].abs().sum()) == 0.0  # no rows for a zero share
    counts = torch.bincount(result.winners, minlength=3)
    assert int(counts[1]) == 0 and int(counts.sum()) == 16
    for i in (0, 2):  # gradient exactly at the drawn rows
        rows = result.grads[i].flatten(1).abs().sum(1) > 0
        assert torch.equal(rows, result.winners == i)
    with pytest.raises(ValueError, match="sum to 1"):
        MultiSourceConfig(rows="shares", row_shares=(0.5, 0.6))
    with pytest.raises(ValueError, match="rows must be"):
        MultiSourceConfig(rows="sometimes")


def _routed(images_1: torch.Tensor):
    arches, gens, critic, images = problem(2)
    cfg = MultiSourceConfig(mining_steps=3, finetune_steps=1, batch=8, routed=True, row_shares=(0.4, 0.6), seed=3)
    return MultiSourceMiner.build(arches, gens, [critic, critic], [images[:20], images_1], cfg)


def test_routed_sources_train_only_against_their_own_part_of_the_target():
    _, _, _, images = problem(2)
    a = _routed(images[20:])
    b = _routed(-images[20:])  # another part for source 1 only
    rows_a, rows_b = a.run_until(4), b.run_until(4)
    assert a.shares() == pytest.approx([0.4, 0.6])
    sa, sb = a.state_tensors(), b.state_tensors()
    source0 = [k for k in sa if k.startswith("sources.0.") or k.startswith("route.0.")]
    assert source0 and all(torch.equal(sa[k], sb[k]) for k in source0)  # source 0 never saw source 1's part
    assert not torch.equal(sa["sources.1.miner.net.0.weight"], sb["sources.1.miner.net.0.weight"])
    assert rows_a[0]["d_loss"] != rows_b[0]["d_loss"]
    with pytest.raises(ValueError, match="row_shares"):
        MultiSourceConfig(routed=True)


def test_a_reloaded_routed_state_continues_exactly_like_an_uninterrupted_run():
    _, _, _, images = problem(2)
    straight = _routed(images[20:])
    straight.run_until(2)
    state = straight.state_tensors()
    rows = straight.run_until(4)
    resumed = _routed(images[20:])
    resumed.load_state_tensors(state)
    assert resumed.run_until(4) == rows
    assert _state_equal(resumed.state_tensors(), straight.state_tensors())
