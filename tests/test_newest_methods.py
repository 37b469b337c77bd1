"""CDC, AdAM and RICK: the properties their papers state, on tiny DCGANs and StyleGAN2s (CPU).

- CDC's distance consistency is 0 while the adapted generator equals the source and positive
  once it differs; the patch critic scores patches.
- The importance scores of AdAM and RICK are the empirical Fisher: the squared per-sample
  gradients, averaged, checked against a hand-derived case.
- AdAM's modulated filters keep their source weights bit for bit and its fine-tuned filters
  carry no modulation; RICK's frozen filters do not move and its pruned filters are zero.
- A method on a generator it cannot see into, and a layer choice the source does not have, are
  refused in one line.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ganlode.methods import architectures, options, registry
from ganlode.methods.adam import AdAM, KernelModulation, base_weight, modulation_importance
from ganlode.methods.base import NotApplicable, Source, TransferOptions
from ganlode.methods.cdc import CDC, feature_layers, similarity_rows
from ganlode.methods.kernels import FilterGuard, empirical_fisher, kernels, per_filter_mean
from ganlode.methods.nets import GANConfig
from ganlode.methods.rick import RICK, filter_importance
from ganlode.methods.stylegan2 import StyleGAN2Config

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ARCHS = {
    "dcgan": GANConfig(resolution=32, channels=3, latent_dim=8, g_width=8, d_width=8),
    "stylegan2": StyleGAN2Config(resolution=32, channels=3, style_dim=16, n_mlp=2, base_channels=8),
}


def _source(arch: str, seed: int = 0) -> Source:
    torch.manual_seed(seed)
    g, d = architectures.build(ARCHS[arch])
    if arch == "dcgan":  # real BatchNorm statistics
        g.train()
        g(torch.randn(64, g.latent_dim))
    return Source(g.eval(), d.eval(), {"loss": "ns-r1"})


def _images(n: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _adapter(method: str, arch: str = "dcgan", steps: int = 6, **given):
    src = _source(arch)
    opts = options.resolve(method, TransferOptions(batch=4, n_critic=1, **given), src, steps)
    return src, registry.build(method, src, _images(), opts, seed=0)


# ---------------------------------------------------------------- CDC


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_cdc_consistency_is_zero_at_the_source_and_positive_after_a_perturbation(arch):
    src, a = _adapter("cdc", arch)
    assert isinstance(a, CDC)
    z = torch.randn(4, a.G.latent_dim, generator=torch.Generator().manual_seed(5))
    layers = [len(a.layers_t) - 1, 0, 1, len(a.layers_t) - 1]
    assert float(a.consistency(z, layers).detach()) == 0.0
    with torch.no_grad():
        for p in a.G.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    after = float(a.consistency(z, layers).detach())
    assert after > 0.0
    # the term is the weighted KL from the source's similarity rows, averaged over the N (N - 1) entries
    outs_t = [f for f in _outputs(a.G, z, a.layers_t)]
    outs_s = [f for f in _outputs(a.G_source, z, a.layers_s)]
    p_t, p_s = similarity_rows(outs_t, layers), similarity_rows(outs_s, layers)
    assert p_s.shape == (4, 3) and torch.allclose(p_s.sum(1), torch.ones(4))
    expect = a.weight * float((p_s * (p_s / p_t).log()).sum() / 12)
    assert after == pytest.approx(expect, rel=1e-4)


def _outputs(g, z, layers):
    from ganlode.methods.cdc import layer_outputs

    with torch.no_grad():
        return layer_outputs(g.eval(), z, layers)


def test_cdc_alternates_anchor_and_patch_steps_and_trains():
    src, a = _adapter("cdc", steps=8)
    modes = []
    real_forward = a.critic.forward

    def spy(x):
        modes.append((a.critic.mode, tuple(real_forward(x).shape[1:])))
        return real_forward(x)

    a.critic.forward = spy
    g0 = copy.deepcopy(a.G.state_dict())
    for _ in range(4):
        a.step()
    image_steps = {shape for mode, shape in modes if mode == "image"}
    patch_steps = {shape for mode, shape in modes if mode == "patch"}
    assert image_steps == {()}  # one score per image on anchor steps (step 0)
    assert patch_steps and all(len(s) == 2 for s in patch_steps)  # an H x W map of patch scores otherwise
    assert any(not torch.equal(g0[k], v) for k, v in a.G.state_dict().items())
    assert a.export().critic is a.critic.critic  # the heads are training machinery, not the checkpoint


def test_cdc_layer_choice_must_exist_in_the_source():
    src = _source("dcgan")
    n = len(feature_layers(src.generator))
    with pytest.raises(NotApplicable, match=rf"feature layers 0\.\.{n - 1}"):
        registry.check_applies("cdc", src, TransferOptions(cdc_layers=f"0,{n}"))
    registry.check_applies("cdc", src, TransferOptions(cdc_layers=f"0,{n - 1}"))


# ---------------------------------------------------------------- the empirical Fisher


def test_empirical_fisher_is_the_mean_squared_per_sample_gradient():
    """loss_i = (w . x_i - y_i)^2: grad_i = 2 (w . x_i - y_i) x_i, so F = mean_i grad_i^2."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g), torch.randn(5, generator=g)
    w = torch.randn(3, generator=g, requires_grad=True)
    (fisher,) = empirical_fisher(lambda i: (w @ x[i] - y[i]) ** 2, [w], 5)
    by_hand = ((2 * (x @ w.detach() - y)).unsqueeze(1) * x).pow(2).mean(0)
    assert torch.allclose(fisher, by_hand, rtol=1e-6)


def test_rick_importance_is_each_filters_mean_fisher():
    """A linear layer, loss_i = sum(W x_i + b): dW[o, j] = x_ij and db[o] = 1, so filter o scores
    (mean_j mean_i x_ij^2 + 1) / 2, the same for every filter."""
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    layer = nn.Linear(4, 3)
    ks = kernels(layer)
    params = [layer.weight, layer.bias]
    fisher = empirical_fisher(lambda i: layer(x[i]).sum(), params, 6)
    imp = filter_importance(ks, fisher)[""]
    assert torch.allclose(imp, torch.full((3,), float((x.pow(2).mean(0).mean() + 1) / 2)), rtol=1e-6)
    assert torch.equal(per_filter_mean(fisher[0], 0), fisher[0].mean(1))


def test_adam_importance_is_mean_fisher_of_u_plus_fisher_of_v():
    """y = (W * (1 + v u^T)) x, loss_i = sum(y): dL/dv_o = sum_j W_oj u_j x_ij, dL/du_j = sum_o W_oj v_o x_ij."""
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    layer = nn.Linear(4, 3, bias=False)
    mod = KernelModulation(layer.weight.shape, 0, torch.Generator().manual_seed(4))
    with torch.no_grad():  # factors away from ~0, so both gradients are visible
        mod.u.copy_(torch.randn(4, generator=torch.Generator().manual_seed(5)))
        mod.v.copy_(torch.randn(3, generator=torch.Generator().manual_seed(6)))
    W, u, v = layer.weight.detach().clone(), mod.u.detach().clone(), mod.v.detach().clone()
    torch.nn.utils.parametrize.register_parametrization(layer, "weight", mod)
    assert torch.allclose(layer.weight, W * (1 + torch.outer(v, u)))
    fisher = empirical_fisher(lambda i: layer(x[i]).sum(), [mod.u, mod.v], 5)
    dv = (x @ (W * u).T)  # 5 x 3
    du = x * (v @ W)  # 5 x 4
    assert torch.allclose(fisher[1], dv.pow(2).mean(0), rtol=1e-5)
    assert torch.allclose(fisher[0], du.pow(2).mean(0), rtol=1e-5)
    (imp,) = modulation_importance([mod], fisher)
    assert torch.allclose(imp, du.pow(2).mean(0).mean() + dv.pow(2).mean(0), rtol=1e-5)


# ---------------------------------------------------------------- frozen, modulated, pruned


def test_filter_guard_restores_frozen_filters_against_adam_momentum():
    p = nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([p], lr=0.1)
    guard = FilterGuard()
    p.sum().backward()
    opt.step()  # momentum now nonzero for every entry
    guard.freeze(p, torch.tensor([True, False, False]), 0)
    guard.prune(p, torch.tensor([False, False, True]), 0)
    kept = p.detach()[0].clone()
    for _ in range(3):
        opt.zero_grad()
        p.sum().backward()
        guard.before()
        opt.step()
        guard.after()
    assert torch.equal(p.detach()[0], kept) and torch.equal(p.detach()[2], torch.zeros(2))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_adam_modulated_filters_keep_source_weights_and_the_rest_carry_no_modulation(arch):
    src, a = _adapter("adam", arch, steps=5, probe_steps=2, fisher_samples=4)
    assert isinstance(a, AdAM)
    source_weights = {k.name: k.weight.detach().clone() for k in kernels(copy.deepcopy(src.generator))}
    for _ in range(5):
        a.step()
    assert a.phase == "main"
    moved = 0
    for k, mod, keep in zip(a.kernels_g, a.mods_g, a.important["generator"]):
        w0, w = source_weights[k.name], base_weight(k).detach()
        sel = [slice(None)] * w.ndim
        sel[k.axis] = keep
        assert torch.equal(w[tuple(sel)], w0[tuple(sel)])  # modulated: the source weights, bit for bit
        assert torch.equal(mod.v.detach()[~keep], torch.zeros(int((~keep).sum())))  # fine-tuned: no modulation
        sel[k.axis] = ~keep
        moved += int(not torch.equal(w[tuple(sel)], w0[tuple(sel)]))
    assert moved > 0  # the fine-tuned filters did train
    total = sum(int(m.sum()) for m in a.important["generator"])
    every = sum(k.filters for k in a.kernels_g)
    assert 0 < total < every and a.record()["modulated_filters"]["generator"] == total
    # the checkpoint folds each modulation into its kernel: same samples, the architecture's own names
    e = a.export()
    assert set(e.generator.state_dict()) == set(src.generator.state_dict())
    z = torch.randn(3, a.G.latent_dim)
    with torch.no_grad():
        assert torch.allclose(e.generator.eval()(z), a.G.eval()(z), atol=1e-6)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_rick_frozen_filters_stay_and_pruned_filters_are_zero(arch):
    src, a = _adapter("rick", arch, steps=8, warmup_steps=2, fisher_every=3, fisher_samples=4,
                      importance_quantile=50.0, prune_quantile=10.0)
    assert isinstance(a, RICK)
    g_before = copy.deepcopy(a.G.state_dict())
    head_before = [p.detach().clone() for p in a.D.parameters()]
    a.step()
    a.step()  # warm-up: only the critic's head moves, and G not at all
    assert all(torch.equal(v, a.G.state_dict()[k]) for k, v in g_before.items())
    blocks = {id(p) for p in a.D.blocks.parameters()}
    for p, p0 in zip(a.D.parameters(), head_before):
        assert torch.equal(p.detach(), p0) == (id(p) in blocks)
    a.step()  # the first estimate: decisions made, then a step
    frozen_at = {id(p): p.detach().clone() for p, _, _ in a.guard_g.frozen.values()}
    a.step()
    a.step()
    for p, mask, axis in a.guard_g.frozen.values():
        sel = [slice(None)] * p.ndim
        sel[axis] = mask
        assert torch.equal(p.detach()[tuple(sel)], frozen_at[id(p)][tuple(sel)])
    n_pruned = 0
    for p, mask, axis in list(a.guard_g.pruned.values()) + list(a.guard_d.pruned.values()):
        sel = [slice(None)] * p.ndim
        sel[axis] = mask
        assert not p.detach()[tuple(sel)].any()
        n_pruned += int(mask.sum()) if p.ndim > 1 else 0
    assert n_pruned > 0 and a.counts["pruned"] == n_pruned
    pruned_before = {k: m.clone() for k, (_, m, _) in a.guard_g.pruned.items()}
    a.step()  # a second estimate: the pruned set only grows
    for k, m in pruned_before.items():
        assert bool((a.guard_g.pruned[k][1] | ~m).all())


# ---------------------------------------------------------------- what they cannot serve


def test_filter_methods_refuse_a_generator_they_cannot_see_into():
    class Opaque(nn.Module):
        latent_dim, resolution, channels, num_classes = 8, 32, 3, 0

        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(8, 3 * 32 * 32))

        def forward(self, z):
            return torch.tanh(z @ self.table).view(-1, 3, 32, 32)

    critic = _source("dcgan").critic
    src = Source(Opaque(), critic, {"loss": "ns-r1"})
    for method, words in (("adam", "conv and linear filters"), ("rick", "conv and linear filters"),
                          ("cdc", "intermediate features")):
        with pytest.raises(NotApplicable, match=words) as e:
            registry.check_applies(method, src, TransferOptions())
        assert "\n" not in str(e.value) and method in str(e.value)
