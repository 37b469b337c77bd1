"""The method and architecture registries: every method through the one interface, on the DCGAN
and on an architecture defined here, and ``Adapter.state_dict`` as the exact resume point."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganlode.methods import architectures, options, registry, seeding
from ganlode.methods.base import NotApplicable, Source, TransferOptions
from ganlode.methods.nets import GANConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------- an architecture that is not the DCGAN


@dataclass(frozen=True)
class TinyConfig:
    resolution: int = 8
    channels: int = 1
    latent_dim: int = 4
    width: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TinyConfig":
        return cls(**d)


class TinyGenerator(nn.Module):
    """An MLP generator: no BatchNorm, no capabilities beyond the interface."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.width), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.width, cfg.channels * cfg.resolution ** 2), nn.Tanh())
        self.latent_dim, self.resolution, self.channels, self.num_classes = (
            cfg.latent_dim, cfg.resolution, cfg.channels, 0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, self.channels, self.resolution, self.resolution)


class TinyCritic(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(cfg.channels, 8, 3, 2, 1), nn.LeakyReLU(0.2)),
                                     nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.LeakyReLU(0.2))])
        self.head = nn.Linear(8 * (cfg.resolution // 4) ** 2, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for b in self.blocks:
            x = b(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].flatten(1)).squeeze(1)


TINY = architectures.register(architectures.Architecture(
    "tiny-test", TinyConfig, lambda cfg: (TinyGenerator(cfg), TinyCritic(cfg)), "an MLP generator (tests)"))


def _features(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2).flatten(1)


def _source(arch) -> Source:
    g, d = seeding.seeded_init(0, lambda: architectures.build(arch))
    if any(isinstance(m, nn.BatchNorm1d) for m in g.modules()):
        g.train()
        g(torch.randn(64, g.latent_dim, generator=torch.Generator().manual_seed(0)))
    return Source(g.eval(), d.eval(), {"loss": "wgan-gp"})


def _adapter(method: str, arch, steps: int, seed: int = 0):
    src = _source(arch)
    res = arch.resolution
    images = torch.rand(10, arch.channels, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1
    given = {"batch": 4} if method != "adabn" else {}
    if registry.spec(method).adversarial:
        given["n_critic"] = 1
    opts = options.resolve(method, TransferOptions(**given), src, steps)
    feats = _features if registry.spec(method).latent else None
    return registry.build(method, src, images, opts, seed=seed, feature_fn=feats)


ARCHES = {"dcgan": GANConfig(latent_dim=8, g_width=8, d_width=8), "tiny": TinyConfig()}
# no BatchNorm in the tiny generator, and no feature_layers() for CDC to compare
TINY_REFUSES = {"adabn": "BatchNorm", "bsa": "BatchNorm", "cdc": "intermediate features"}


def test_the_registry_round_trips_an_architecture_config():
    for cfg in ARCHES.values():
        d = architectures.to_dict(cfg)
        assert architectures.from_dict(d) == cfg
        g, c = architectures.build(d)
        assert (g.resolution, g.channels, g.num_classes) == (cfg.resolution, cfg.channels, 0)
        assert len(c.blocks) >= 1
    assert architectures.from_dict({k: v for k, v in asdict(ARCHES["dcgan"]).items()}) == ARCHES["dcgan"]
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        architectures.from_dict({"name": "nope"})


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize("method", registry.METHODS)
def test_every_method_that_applies_runs_and_the_others_say_why(method, arch):
    cfg = ARCHES[arch]
    if arch == "tiny" and method in TINY_REFUSES:
        with pytest.raises(NotApplicable) as e:
            _adapter(method, cfg, 4)
        assert "\n" not in str(e.value) and TINY_REFUSES[method] in str(e.value)
        return
    adapter = _adapter(method, cfg, 4)
    for _ in range(3):
        stats = adapter.step()
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert adapter.steps_done == 3
    with torch.no_grad():
        g = adapter.sampling_generator().eval()
        x = g(torch.randn(5, g.latent_dim))
    assert x.shape == (5, cfg.channels, cfg.resolution, cfg.resolution)
    assert float(x.abs().max()) <= 1.0
    export = adapter.export()
    assert export.generator is not None and adapter.record()["method"] == method


def _round_trip(state: dict) -> dict:
    """Through the checkpoint format: torch.save, then torch.load(weights_only=True)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method", registry.METHODS)
def test_state_dict_resumes_every_method_bit_for_bit(method):
    """k steps, save, a fresh adapter loads the state and finishes: equal to n uninterrupted steps."""
    arch, n, k = ARCHES["dcgan"], 6, 3  # minegan mines 3 steps, so k = 3 resumes at the phase switch
    straight = _adapter(method, arch, n)
    straight_stats = [straight.step() for _ in range(n)]
    first = _adapter(method, arch, n)
    for _ in range(k):
        first.step()
    state = _round_trip(first.state_dict())
    resumed = _adapter(method, arch, n)
    resumed.load_state_dict(state)
    assert resumed.steps_done == k
    resumed_stats = [resumed.step() for _ in range(n - k)]
    assert resumed_stats == straight_stats[k:]
    a, b = straight.export(), resumed.export()
    for name, value in a.generator.state_dict().items():
        assert torch.equal(value, b.generator.state_dict()[name]), name
    z = torch.randn(4, straight.sampling_generator().latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(straight.sampling_generator().eval()(z), resumed.sampling_generator().eval()(z))


def test_options_fail_with_the_option_named():
    with pytest.raises(options.OptionError) as e:
        options.check("adabn", TransferOptions(freeze_depth=1), critic_blocks=3, steps=10)
    assert e.value.option == "freeze_depth" and "lr" in e.value.allowed
    with pytest.raises(options.OptionError) as e:
        registry.spec("nope")
    assert e.value.option == "method" and "finetune" in e.value.allowed


def test_seed_streams_are_independent_and_reproducible():
    a = torch.rand(3, generator=seeding.generator(5, "gan-train", 0))
    assert torch.equal(a, torch.rand(3, generator=seeding.generator(5, "gan-train", 0)))
    assert not torch.equal(a, torch.rand(3, generator=seeding.generator(5, "gan-train", 1)))
    assert not torch.equal(a, torch.rand(3, generator=seeding.generator(6, "gan-train", 0)))
    before = torch.random.get_rng_state()
    seeding.seeded_init(1, lambda: nn.Linear(3, 3))
    assert torch.equal(before, torch.random.get_rng_state())


# ---------------------------------------------------------------- the same architecture through `ganlode transfer`


@pytest.fixture(scope="module")
def tiny_arch_source(tmp_path_factory) -> str:
    from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint

    g, d = seeding.seeded_init(0, lambda: architectures.build(TinyConfig()))
    path = str(tmp_path_factory.mktemp("tiny") / "ckpt")
    save_checkpoint(path, {"model_kind": "gan", "arch": architectures.to_dict(TinyConfig()),
                           "train": {"loss": "wgan-gp"}}, g, d)
    return path


@pytest.mark.parametrize("method", registry.METHODS)
def test_the_cli_runs_every_applicable_method_on_an_architecture_it_does_not_know(method, tiny_arch_source, tmp_path,
                                                                                   capsys, monkeypatch):
    from ganlode.methods import latent
    from ganlode.orchestrator.artifacts.loaders import load_model
    from ganlode.orchestrator.cli.main import main

    monkeypatch.setattr(latent, "MINING_CANDIDATES", 64)
    run = tmp_path / "run"
    extra = [] if method == "adabn" else ["--batch", "4"]
    if registry.spec(method).adversarial:
        extra += ["--n-critic", "1"]
    code = main(["transfer", "--source", tiny_arch_source, "--target", "digits8:7@12", "--method", method,
                 "--steps", "3", "--eval-every", "1", "--eval-n", "16", "--out", str(run), "--no-progress", *extra])
    err = capsys.readouterr().err
    if method in TINY_REFUSES:
        assert code == 2 and len(err.strip().splitlines()) == 1 and TINY_REFUSES[method] in err, err
        assert not run.exists()
        return
    assert code == 0, err
    model = load_model(str(run))
    x = model.sampler(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and isinstance(model.module, nn.Module)
    assert model.config["arch"]["name"] == "tiny-test"
