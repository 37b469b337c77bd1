"""Each transfer method's defining mechanism, as an invariant or a closed form (tiny nets, CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ganlode.methods import catalog, options, registry
from ganlode.methods.base import Adapter, OptionError, Source, TransferOptions
from ganlode.methods.bn import adapt_batchnorm, batchnorm_layers
from ganlode.methods.bsa import ScaleShiftGenerator, batchnorm_affine_parameters
from ganlode.methods.finetune import distill_loss, l2sp_penalty
from ganlode.methods.latent import fit_gaussian, fold_latent_gaussian
from ganlode.methods.nets import GANConfig, build_gan

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _source(seed: int = 0) -> Source:
    torch.manual_seed(seed)
    g, d = build_gan(ARCH)
    g.train()
    g(torch.randn(64, ARCH.latent_dim))  # non-trivial BatchNorm statistics
    return Source(g.eval(), d.eval(), {"loss": "wgan-gp"})


def _images(n: int = 12) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _features(x: torch.Tensor) -> torch.Tensor:
    """A small differentiable stand-in for the classifier's features."""
    return F.avg_pool2d(x, 7).flatten(1)


def _adapter(method: str, steps: int = 3, **given) -> Adapter:
    src = _source()
    base = {"batch": 6} if method != "adabn" else {}
    if method in catalog.ADVERSARIAL:
        base["n_critic"] = 1
    opts = options.resolve(method, TransferOptions(**{**base, **given}), src, steps)
    return registry.build(method, src, _images(), opts, seed=0, feature_fn=_features if method in catalog.LATENT else None)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> bool:
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


# ------------------------------------------------------------------ options


def test_options_that_do_not_belong_to_a_method_are_rejected():
    with pytest.raises(OptionError) as e:
        options.check("adabn", TransferOptions(freeze_depth=1), critic_blocks=3, steps=10)
    assert e.value.option == "freeze_depth"
    # freezed, l2sp and distill default their own option (the benchmarked settings)
    src = Source(*build_gan(GANConfig()), {})
    assert options.resolve("freezed", TransferOptions(), src, 10).freeze_depth == 2
    assert options.resolve("l2sp", TransferOptions(), src, 10).l2sp_weight == 0.01
    assert options.resolve("distill", TransferOptions(), src, 10).distill_weight == 1.0
    with pytest.raises(OptionError, match="critic has 3 blocks"):
        options.check("freezed", TransferOptions(freeze_depth=4), critic_blocks=3, steps=10)
    # the fine-tuning options combine under finetune
    options.check("finetune", TransferOptions(freeze_depth=2, l2sp_weight=0.1, distill_weight=1.0),
                    critic_blocks=3, steps=10)


# ------------------------------------------------------------------ finetune family


def test_finetune_starts_from_the_source_and_leaves_it_untouched():
    src = _source()
    before_g, before_d = _state(src.generator), _state(src.critic)
    opts = options.resolve("finetune", TransferOptions(batch=6, n_critic=1), src, 2)
    a = registry.build("finetune", src, _images(), opts, seed=0)
    assert _same(_state(a.G), before_g) and _same(_state(a.D), before_d)
    a.step()
    a.step()
    assert _same(_state(src.generator), before_g) and _same(_state(src.critic), before_d)
    assert not _same(_state(a.G), before_g)


def test_scratch_ignores_the_source_weights():
    """Two sources with different weights give the same scratch run (only the architecture is used)."""
    runs = []
    for source_seed in (0, 1):
        src = _source(source_seed)
        opts = options.resolve("scratch", TransferOptions(batch=6, n_critic=1), src, 1)
        a = registry.build("scratch", src, _images(), opts, seed=5)
        assert not _same(_state(a.G), _state(src.generator))
        a.step()
        runs.append(_state(a.G))
    assert _same(runs[0], runs[1])


@pytest.mark.parametrize("depth", [1, 3])
def test_freezed_blocks_are_bit_identical_and_outside_the_optimizer(depth):
    src = _source()
    a = _adapter("freezed", freeze_depth=depth)
    frozen = {id(p) for b in a.D.blocks[:depth] for p in b.parameters()}
    in_opt = {id(p) for group in a.trainer.opt_d.param_groups for p in group["params"]}
    assert not frozen & in_opt
    for _ in range(3):
        a.step()
    for i, (block, block0) in enumerate(zip(a.D.blocks, src.critic.blocks)):
        same = _same(_state(block), _state(block0))
        assert same == (i < depth), f"block {i}"
    assert not torch.equal(a.D.head.weight, src.critic.head.weight)


def test_l2sp_penalty_closed_form():
    """alpha * sum ||w - w0||^2: zero at the source; alpha * c^2 * (#weights) after shifting all by c."""
    src = _source()
    g = copy.deepcopy(src.generator)
    params, anchors = list(g.parameters()), [p.detach().clone() for p in src.generator.parameters()]
    assert float(l2sp_penalty(params, anchors, 0.3).detach()) == 0.0
    with torch.no_grad():
        for p in params:
            p.add_(0.5)
    count = sum(p.numel() for p in params)
    assert float(l2sp_penalty(params, anchors, 0.3).detach()) == pytest.approx(0.3 * 0.25 * count, rel=1e-5)


def test_l2sp_terms_in_the_loop_equal_the_distance_to_the_source():
    src = _source()
    a = _adapter("l2sp", l2sp_weight=0.2, l2sp_on="both")
    g_term, d_term = a.trainer.terms.g_extra[0], a.trainer.terms.d_extra[0]
    assert float(g_term().detach()) == 0.0 and float(d_term().detach()) == 0.0
    for _ in range(2):
        a.step()
    expect_g = 0.2 * sum(float((p - q).detach().pow(2).sum()) for p, q in zip(a.G.parameters(), src.generator.parameters()))
    expect_d = 0.2 * sum(float((p - q).detach().pow(2).sum()) for p, q in zip(a.D.parameters(), src.critic.parameters()))
    assert float(g_term().detach()) == pytest.approx(expect_g, rel=1e-5) and expect_g > 0
    assert float(d_term().detach()) == pytest.approx(expect_d, rel=1e-5) and expect_d > 0


def test_l2sp_on_g_only_leaves_the_critic_unpenalised():
    a = _adapter("l2sp", l2sp_weight=0.2, l2sp_on="g")
    assert len(a.trainer.terms.g_extra) == 1 and not a.trainer.terms.d_extra


def test_distill_loss_is_zero_for_the_source_critic_and_the_feature_distance_otherwise():
    src = _source()
    x = _images()
    critic = copy.deepcopy(src.critic)
    assert float(distill_loss(critic, src.critic, x, 2.0).detach()) == 0.0
    with torch.no_grad():
        critic.blocks[1][0].weight.mul_(1.5)
    expect = 2.0 * sum(float((f - f0).detach().pow(2).mean()) for f, f0 in zip(critic.features(x), src.critic.features(x)))
    assert float(distill_loss(critic, src.critic, x, 2.0).detach()) == pytest.approx(expect, rel=1e-6) and expect > 0
    a = _adapter("distill", distill_weight=1.0)
    real, fake = x[:4], x[4:8]
    assert float(a.trainer.terms.d_batch_extra[0](real, fake).detach()) == 0.0  # the critic starts at the source


# ------------------------------------------------------------------ latent-code methods


def test_fit_gaussian_and_folding_are_exact():
    codes = torch.randn(20, ARCH.latent_dim, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    mean, chol = fit_gaussian(codes, ridge=1e-3)
    centred = codes.double() - codes.double().mean(0)
    cov = centred.T @ centred / len(codes)
    ridge = 1e-3 * float(torch.diagonal(cov).mean())
    assert torch.allclose(mean.double(), codes.double().mean(0), atol=1e-6)
    assert torch.allclose((chol @ chol.T).double(), cov + ridge * torch.eye(ARCH.latent_dim, dtype=torch.float64),
                          atol=1e-5)
    g = _source().generator
    folded = fold_latent_gaussian(g, mean, chol).eval()
    eps = torch.randn(16, ARCH.latent_dim)
    with torch.no_grad():
        assert torch.allclose(folded(eps), g(mean + eps @ chol.T), atol=1e-5)


def test_adabn_sets_statistics_to_the_inputs_and_changes_no_weight():
    src = _source()
    a = _adapter("adabn", steps=3)
    codes0 = a.codes.detach().clone()
    for _ in range(3):
        a.step()
    assert not torch.equal(a.codes, codes0)  # the codes were fitted...
    g = a.adapted_net()
    params = dict(g.named_parameters())
    for k, p in src.generator.named_parameters():  # ...but no weight changed (BN scale/shift included)
        assert torch.equal(params[k], p), k
    # the statistics equal those of each BatchNorm layer's inputs when all codes go through G
    codes = a.codes.detach()
    with torch.no_grad():
        h = src.generator.fc[0](codes)
        bn1 = batchnorm_layers(g)[0]
        assert torch.allclose(bn1.running_mean, h.mean(0), atol=1e-6)
        assert torch.allclose(bn1.running_var, h.var(0, unbiased=False), atol=1e-5)
        train_mode = copy.deepcopy(src.generator).train()(codes)  # batch statistics
        assert torch.allclose(g.eval()(codes), train_mode, atol=1e-5)


def test_adapt_batchnorm_alone_runs_no_gradient_step():
    g = copy.deepcopy(_source().generator)
    before = {k: v.clone() for k, v in g.named_parameters()}
    adapt_batchnorm(g, torch.randn(32, ARCH.latent_dim) + 2.0)
    assert all(torch.equal(before[k], v) for k, v in g.named_parameters())
    assert all(p.grad is None for p in g.parameters())


def test_bsa_trains_only_scale_shift_and_codes():
    src = _source()
    a = _adapter("bsa")
    codes0 = a.codes.detach().clone()
    for _ in range(3):
        a.step()
    net: ScaleShiftGenerator = a.net
    bn_affine = {id(p) for p in batchnorm_affine_parameters(net.generator)}
    names = {id(p): k for k, p in net.generator.named_parameters()}
    now, before = net.generator.state_dict(), src.generator.state_dict()
    for k, v in now.items():
        is_bn_affine = any(names.get(id(p)) == k for p in net.generator.parameters() if id(p) in bn_affine)
        if not is_bn_affine:  # every other weight and every running statistic
            assert torch.equal(v, before[k]), k
    assert any(not torch.equal(now[names[i]], before[names[i]]) for i in bn_affine)
    assert not torch.equal(net.scale, torch.ones_like(net.scale)) and not torch.equal(a.codes, codes0)
    # the saved generator (scale/shift and code Gaussian folded in) samples the adapted model
    exported, sampler = a.export().generator.eval(), a.sampling_generator().eval()
    eps = torch.randn(8, ARCH.latent_dim)
    with torch.no_grad():
        assert torch.allclose(exported(eps), sampler(eps), atol=1e-5)


def test_glo_trains_the_generator_and_the_codes():
    src = _source()
    a = _adapter("glo")
    codes0 = a.codes.detach().clone()
    for _ in range(3):
        a.step()
    assert not torch.equal(a.codes, codes0)
    assert not torch.equal(a.net.up[0].weight, src.generator.up[0].weight)
    # eval mode throughout: BatchNorm running statistics are the source's
    bn, bn0 = batchnorm_layers(a.net)[0], batchnorm_layers(src.generator)[0]
    assert torch.equal(bn.running_mean, bn0.running_mean)


# ------------------------------------------------------------------ minegan


def test_minegan_mining_keeps_g_bit_identical_then_joint_training_moves_it():
    src = _source()
    a = _adapter("minegan", steps=5, mining_steps=3)
    miner0, critic0 = _state(a.miner), _state(a.D)
    for _ in range(3):
        a.step()
    assert a.phase == "mining"
    assert _same(_state(a.G), _state(src.generator))  # weights and BatchNorm statistics
    assert not _same(_state(a.miner), miner0) and not _same(_state(a.D), critic0)
    a.step()
    assert a.phase == "joint"
    assert not _same(_state(a.G), _state(src.generator))
    ex = a.export()
    assert ex.kind == "minegan" and any(k.startswith("miner.") for k in ex.extra)


@pytest.mark.parametrize("method", catalog.METHODS)
def test_every_method_samples_images_of_the_target_shape(method):
    given = {"freezed": {"freeze_depth": 1}, "l2sp": {"l2sp_weight": 0.1}, "distill": {"distill_weight": 0.1}}
    a = _adapter(method, steps=1, **given.get(method, {}))
    a.step()
    gen = a.sampling_generator().eval()
    with torch.no_grad():
        x = gen(torch.randn(5, gen.latent_dim))
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
