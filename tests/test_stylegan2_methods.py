"""StyleGAN2 with the methods that know about its mapping network: MineGAN mining in w
(``mine_space: w``) and the truncation trick toward the mean w (``ganlode sample --trunc``).

A tiny 32 px StyleGAN2 (style_dim 16, two mapping layers, width 8), random target images, CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganlode.methods import architectures, options, registry
from ganlode.methods.base import NotApplicable, OptionError, Source, TransferOptions
from ganlode.methods.minegan import MineGAN
from ganlode.methods.miner import MinedGenerator
from ganlode.methods.nets import GANConfig, build_gan
from ganlode.methods.stylegan2 import StyleGAN2Config, build_stylegan2
from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint
from ganlode.orchestrator.artifacts.loaders import load_model
from ganlode.orchestrator.artifacts.sampling import generator_sampler
from ganlode.orchestrator.artifacts.truncation import sample_seed, truncated_sampler
from ganlode.orchestrator.cli.main import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CFG = StyleGAN2Config(resolution=32, channels=3, style_dim=16, n_mlp=2, channel_multiplier=1, base_channels=8)
STEPS, MINING = 4, 2


def _source(seed: int = 0) -> Source:
    torch.manual_seed(seed)
    g, d = build_stylegan2(CFG)
    return Source(g.eval(), d.eval(), {"loss": "ns-r1"})


def _images(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _resolved(src: Source, **given) -> TransferOptions:
    return options.resolve("minegan", TransferOptions(batch=4, n_critic=1, mining_steps=MINING, **given), src, STEPS)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _w_mean(g) -> torch.Tensor:
    """The StyleGAN2 truncation centre, as the sampler must compute it."""
    return g.mean_latent(4096, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def w_mined():
    """A MineGAN of the tiny StyleGAN2 mined in w: MINING steps of mining, then joint fine-tuning."""
    src = _source()
    a = registry.build("minegan", src, _images(), _resolved(src, mine_space="w"), seed=0)
    states = {"source": _state(src.generator), "miner0": _state(a.miner)}
    for _ in range(MINING):
        a.step()
    states["mined"], states["miner_mined"] = _state(a.G), _state(a.miner)
    phase_after_mining = a.phase
    for _ in range(STEPS - MINING):
        a.step()
    return src, a, states, phase_after_mining


def _save(a, path) -> str:
    """The adapter's model as ``ganlode transfer`` writes it (record = arch + the export's config)."""
    export = a.export()
    save_checkpoint(str(path), {"model_kind": export.kind, "arch": architectures.to_dict(a.G.cfg),
                                "method": "minegan", **export.config},
                    export.generator, export.critic, extra=export.extra)
    return str(path)


# ---------------------------------------------------------------- MineGAN in w


def test_mining_in_w_trains_the_miner_and_never_the_mapping_network(w_mined):
    src, a, states, phase_after_mining = w_mined
    assert a.mine_space == "w" and a.record()["mine_space"] == "w"
    # the miner starts at the source's mean w (its last bias), not at w = 0
    assert torch.equal(states["miner0"]["net.2.bias"], _w_mean(src.generator)[0])
    # mining: G untouched (all of it), the miner moved
    assert phase_after_mining == "mining"
    assert _same(states["mined"], states["source"])
    assert not _same(states["miner_mined"], states["miner0"])
    # joint fine-tuning: synthesis and miner move, the mapping network (style.*) stays bit-identical
    assert a.phase == "joint"
    now = _state(a.G)
    mapping = [k for k in now if k.startswith("style.")]
    assert mapping and all(torch.equal(now[k], states["source"][k]) for k in mapping)
    assert any(not torch.equal(now[k], states["source"][k]) for k in now if not k.startswith("style."))
    assert not _same(_state(a.miner), states["miner_mined"])
    assert not any(p.requires_grad for p in a.G.style.parameters())


def test_a_w_miner_samples_synthesis_of_its_output(w_mined):
    _, a, _, _ = w_mined
    gen = a.sampling_generator().eval()
    u = torch.randn(5, gen.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = gen(u)
        assert torch.equal(x, a.G.synthesis(a.miner(u)))
        assert not torch.equal(x, a.G(a.miner(u)))  # not through the mapping network (that is mining in z)
    assert x.shape == (5, 3, 32, 32)


def test_the_saved_w_minegan_records_its_space_and_reloads_to_identical_samples(w_mined, tmp_path):
    _, a, _, _ = w_mined
    loaded = load_model(_save(a, tmp_path / "ckpt"))
    assert loaded.config["mine_space"] == "w"
    assert isinstance(loaded.module, MinedGenerator) and loaded.module.space == "w"
    ours = generator_sampler(a.sampling_generator())(6, torch.Generator().manual_seed(5))
    theirs = loaded.sampler(6, torch.Generator().manual_seed(5))
    assert torch.equal(ours, theirs)


def test_mining_in_z_stays_the_default_and_goes_through_the_mapping_network(tmp_path):
    src = _source()
    a = registry.build("minegan", src, _images(), _resolved(src), seed=0)
    assert a.mine_space == "z" and a.export().config["mine_space"] == "z"
    assert a.miner.net[-1].out_features == CFG.style_dim
    u = torch.randn(3, a.miner.input_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a.sampling_generator().eval()(u), a.G(a.miner(u)))
    a.step()
    loaded = load_model(_save(a, tmp_path / "z"))
    assert loaded.module.space == "z"
    assert torch.equal(loaded.sampler(4, torch.Generator().manual_seed(1)),
                       generator_sampler(a.sampling_generator())(4, torch.Generator().manual_seed(1)))


def test_a_generator_without_a_mapping_network_refuses_mine_space_w():
    g, d = build_gan(GANConfig(latent_dim=8, g_width=8, d_width=8))
    dcgan = Source(g.eval(), d.eval(), {"loss": "ns-r1"})
    images = torch.zeros(4, 1, 28, 28)
    opts = options.resolve("minegan", TransferOptions(batch=4, mine_space="w"), dcgan, 2)
    needle = "only architectures with a mapping network (stylegan2) mine in w"
    with pytest.raises(NotApplicable, match=r"only architectures with a mapping network \(stylegan2\) mine in w"):
        registry.check_applies("minegan", dcgan, opts)
    with pytest.raises(ValueError) as e:
        registry.build("minegan", dcgan, images, opts, seed=0)
    assert needle in str(e.value) and "dcgan" in str(e.value)
    with pytest.raises(ValueError, match="mapping network"):
        MineGAN(dcgan, images, opts, seed=0)
    registry.check_applies("minegan", dcgan, options.resolve("minegan", TransferOptions(), dcgan, 2))  # z is fine
    # the option's own checks: its values, and only minegan takes it
    with pytest.raises(OptionError) as e:
        options.check("minegan", TransferOptions(mine_space="u"), critic_blocks=3, steps=2)
    assert e.value.option == "mine_space"
    with pytest.raises(OptionError, match="does not apply"):
        options.check("finetune", TransferOptions(mine_space="w"), critic_blocks=3, steps=2)


def test_the_cli_refuses_mine_space_w_for_a_dcgan_source_in_one_line(tiny_source, tmp_path, one_line_error):
    out = tmp_path / "run"

    def argv(method: str, space: str) -> list[str]:
        return ["transfer", "--source", tiny_source, "--target", "mnist5k:7@8", "--method", method,
                "--mine-space", space, "--steps", "2", "--out", str(out), "--no-progress"]

    one_line_error(argv("minegan", "w"), "--method minegan", "only architectures with a mapping network (stylegan2) mine in w")
    one_line_error(argv("finetune", "w"), "--mine-space", "does not apply")
    one_line_error(argv("minegan", "q"), "--mine-space")
    assert not out.exists()


# ---------------------------------------------------------------- truncation toward the mean w


@pytest.fixture(scope="module")
def stylegan2_ckpt(tmp_path_factory) -> str:
    src = _source(3)
    path = str(tmp_path_factory.mktemp("sg2") / "ckpt")
    save_checkpoint(path, {"model_kind": "gan", "arch": architectures.to_dict(CFG), "train": {"loss": "ns-r1"}},
                    src.generator, src.critic)
    return path


def test_truncation_pulls_w_toward_the_mean_w(stylegan2_ckpt):
    model = load_model(stylegan2_ckpt)
    g = model.module
    w_mean = _w_mean(g)
    with torch.no_grad():
        centre = g.synthesis(w_mean).clamp(-1, 1)
    # psi 0: every seed is the centre's image
    zero = truncated_sampler(model, 0.0)
    for s in (0, 1, 7):
        assert torch.equal(sample_seed(zero, s), centre)
    # psi 1: the model's own sampler
    one = truncated_sampler(model, 1.0)
    assert torch.equal(one(4, torch.Generator().manual_seed(2)), model.sampler(4, torch.Generator().manual_seed(2)))
    # psi 0.5: w_mean + psi (mapping(z) - w_mean), and not the z * psi of models without a mapping network
    half = sample_seed(truncated_sampler(model, 0.5), 4)
    z = torch.randn(1, CFG.style_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        w = g.mapping(z)
        assert torch.equal(half, g(w_mean + 0.5 * (w - w_mean), input_is_w=True).clamp(-1, 1))
        assert not torch.equal(half, g(0.5 * z).clamp(-1, 1))


def test_truncating_a_mined_model_pulls_toward_the_mean_of_its_own_w(w_mined, tmp_path):
    _, a, _, _ = w_mined
    model = load_model(_save(a, tmp_path / "w"))
    u = torch.randn(4096, a.miner.input_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        centre_w = model.module.miner(u).mean(0, keepdim=True)  # the miner's outputs are the w
        centre = model.module.generator.synthesis(centre_w).clamp(-1, 1)
        source_centre = model.module.generator.synthesis(_w_mean(model.module.generator)).clamp(-1, 1)
    zero = truncated_sampler(model, 0.0)
    assert torch.equal(sample_seed(zero, 0), centre) and torch.equal(sample_seed(zero, 9), centre)
    assert not torch.equal(centre, source_centre)
    # a miner in z over the same generator: the centre is the mean of mapping(M(u))
    src = _source()
    z_mined = registry.build("minegan", src, _images(), _resolved(src), seed=0)
    z_model = load_model(_save(z_mined, tmp_path / "z"))
    with torch.no_grad():
        zg = z_model.module.generator
        z_centre = zg.synthesis(zg.mapping(z_model.module.miner(u)).mean(0, keepdim=True)).clamp(-1, 1)
    assert torch.equal(sample_seed(truncated_sampler(z_model, 0.0), 3), z_centre)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_ganlode_sample_trunc_on_a_stylegan2_checkpoint(stylegan2_ckpt, tmp_path, capsys):
    out = tmp_path / "picks"
    assert main(["sample", stylegan2_ckpt, "--seeds", "0-2", "--trunc", "0.5", "--out", str(out)]) == 0
    assert "truncation 0.5" in capsys.readouterr().out
    pngs = [_png(out / f"seed{s:04d}.png") for s in range(3)]
    assert pngs[0].shape == (32, 32, 3) and not np.array_equal(pngs[0], pngs[1])
    zero = tmp_path / "zero"
    assert main(["sample", stylegan2_ckpt, "--seeds", "0-2", "--trunc", "0", "--out", str(zero)]) == 0
    same = [_png(zero / f"seed{s:04d}.png") for s in range(3)]
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])
    assert main(["sample", stylegan2_ckpt, "--n", "4", "--trunc", "0.5", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
