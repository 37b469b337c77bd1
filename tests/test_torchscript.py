"""``ganlode import torchscript``: any scripted generator as a checkpoint that samples bit for bit what
the module does, trains through finetune and minegan (its weights saved beside the unchanged
archive), and refuses in one line what it cannot take: files that are not TorchScript (a pickle is
never loaded), undeclared or contradicted sizes, a module whose output disagrees with them, and
methods that need a trained source critic or capabilities a scripted module lacks."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ganlode.methods import interface
from ganlode.methods.nets import Critic
from ganlode.methods.torchscript import TorchScriptConfig, TorchScriptCritic, TorchScriptGenerator, archive_problem
from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint
from ganlode.orchestrator.artifacts.loaders import load_model
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.errors import UserError
from ganlode.orchestrator.importers.torchscript import scratch_critic

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              # torch.jit.script/trace/save: deprecated upstream, and the very format users bring
              pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")]

LATENT, RES, CHANNELS = 8, 32, 3
FAST = ["--steps", "2", "--eval-every", "0", "--eval-n", "4", "--no-progress", "--batch", "8", "--n-critic", "1"]


class TinyGenerator(nn.Module):
    """Someone else's generator: Linear, two ConvTranspose stages, tanh (times ``scale``)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.latent_dim = LATENT
        self.resolution = RES
        self.channels = CHANNELS
        self.scale = scale
        self.fc = nn.Linear(LATENT, 16 * 8 * 8)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(8, CHANNELS, 4, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(self.fc(z).view(-1, 16, 8, 8))) * self.scale


class TinyCritic(nn.Module):
    """A critic with the interface's ``blocks`` and exported ``features``; scores are (B, 1)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(CHANNELS, 8, 4, 2, 1), nn.LeakyReLU(0.2)),
                                     nn.Sequential(nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2))])
        self.head = nn.Linear(16 * 8 * 8, 1)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats: List[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


class ScoresOnly(nn.Module):
    """A critic without ``blocks``/``features``: FreezeD and distillation could not read it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, 4, 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((1, 2, 3))


def _save(module: nn.Module, path, *, trace: bool = False) -> torch.jit.ScriptModule:
    scripted = torch.jit.trace(module, torch.randn(2, LATENT)) if trace else torch.jit.script(module)
    torch.jit.save(scripted, str(path))
    return torch.jit.load(str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The scripted generator (with attributes), a traced one (without), a scripted critic, and a target
    folder of 40 colour 32x32 PNGs."""
    root = tmp_path_factory.mktemp("ts")
    torch.manual_seed(0)
    scripted = _save(TinyGenerator(), root / "g.ts")
    traced = _save(TinyGenerator(), root / "traced.ts", trace=True)
    critic = _save(TinyCritic(), root / "d.ts")
    rng = np.random.default_rng(0)
    folder = root / "target" / "patches"
    folder.mkdir(parents=True)
    for i in range(40):
        img = np.zeros((RES, RES, 3), np.uint8)
        img[..., i % 3] = 200
        img[8:24, 8:24] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return {"root": root, "g": root / "g.ts", "scripted": scripted, "traced_path": root / "traced.ts",
            "traced": traced, "d": root / "d.ts", "critic": critic, "target": str(folder)}


@pytest.fixture(scope="module")
def imported(files):
    out = files["root"] / "imported"
    assert main(["import", "torchscript", str(files["g"]), "--out", str(out)]) == 0
    return out


def _z(n: int = 4, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, LATENT, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the import


def test_the_checkpoint_samples_bit_for_bit_what_the_module_does(files, imported, tmp_path, capsys, one_line_error):
    ckpt = load_checkpoint(str(imported))
    z = _z()
    with torch.no_grad():
        assert torch.equal(ckpt.generator(z), files["scripted"](z))
    g = ckpt.generator
    interface.check_generator(g)
    assert isinstance(g, TorchScriptGenerator)
    assert (g.latent_dim, g.resolution, g.channels, g.num_classes) == (LATENT, RES, CHANNELS, 0)
    # the sampler every command uses: N(0, I) latents from the given torch.Generator, clamped to [-1, 1]
    model = load_model(str(imported))
    with torch.no_grad():
        want = files["scripted"](torch.randn(3, LATENT, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert torch.equal(model.sampler(3, torch.Generator().manual_seed(1)), want)

    # provenance: the archive kept byte for byte, its digest, where each attribute came from
    raw = files["g"].read_bytes()
    assert (imported / "generator.ts").read_bytes() == raw
    assert ckpt.arch == TorchScriptConfig(LATENT, RES, CHANNELS, hashlib.sha256(raw).hexdigest(),
                                          critic=ckpt.config["arch"]["critic"])
    record = ckpt.config["imported"]
    assert record["sha256"] == hashlib.sha256(raw).hexdigest() and record["format"] == "torchscript"
    assert record["attributes"] == {"latent_dim": "module", "resolution": "module", "channels": "module"}
    assert ckpt.config["command"] == f"ganlode import torchscript {files['g']} --out {imported}"
    # no critic given: a registry DCGAN critic of the generator's size, from scratch, seeded
    assert ckpt.config["critic_source"] == "scratch" and ckpt.critic_from_scratch
    assert isinstance(ckpt.critic, Critic) and (ckpt.critic.resolution, ckpt.critic.channels) == (RES, CHANNELS)
    again = tmp_path / "again"
    assert main(["import", "torchscript", str(files["g"]), "--out", str(again)]) == 0
    assert (again / "model.safetensors").read_bytes() == (imported / "model.safetensors").read_bytes()

    # an existing checkpoint is never overwritten
    one_line_error(["import", "torchscript", str(files["g"]), "--out", str(again)], "exists already")
    assert (again / "model.safetensors").read_bytes() == (imported / "model.safetensors").read_bytes()


def test_sample_writes_a_colour_png(imported, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["sample", str(imported), "--n", "4", "--out", str(grid)]) == 0
    img = Image.open(grid)
    assert img.mode == "RGB"
    a = np.asarray(img).astype(int)
    assert (a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any()  # colour, not gray in RGB


def test_the_wrapper_is_a_trainable_module_whose_copies_are_independent(imported):
    g = load_checkpoint(str(imported)).generator
    params = list(g.parameters())
    assert params and all(p.is_leaf and p.requires_grad for p in params)
    g.train()
    assert g.module.training
    g(_z()).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)  # gradients reach every weight
    twin = copy.deepcopy(g)
    # a plain deepcopy of a ScriptModule gives non-leaf parameters, which an optimizer refuses
    torch.optim.Adam(twin.parameters())
    assert all(p.is_leaf for p in twin.parameters()) and twin.training and twin.cfg == g.cfg
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(next(twin.parameters()), next(g.parameters()))


def test_attributes_from_flags(files, tmp_path, capsys):
    out = tmp_path / "traced"
    assert main(["import", "torchscript", str(files["traced_path"]), "--latent-dim", "8", "--resolution", "32",
                 "--channels", "3", "--out", str(out), "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["attributes"] == {"latent_dim": "--latent-dim", "resolution": "--resolution", "channels": "--channels"}
    assert reply["arch"]["name"] == "torchscript" and reply["critic_source"] == "scratch"
    z = _z()
    with torch.no_grad():
        assert torch.equal(load_checkpoint(str(out)).generator(z), files["traced"](z))


def test_outputs_far_outside_the_image_range_are_warned_about(files, tmp_path, capsys):
    src, out = tmp_path / "loud.ts", tmp_path / "loud"
    _save(TinyGenerator(scale=5.0), src)
    assert main(["import", "torchscript", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "far outside [-1, 1]" in err[0]
    assert out.exists()


# ---------------------------------------------------------------- refusals at import


def test_undeclared_contradicted_or_wrong_sizes_are_refused(files, tmp_path, capsys, one_line_error):
    out = tmp_path / "ckpt"
    traced, scripted = str(files["traced_path"]), str(files["g"])
    imp = ["import", "torchscript"]
    one_line_error([*imp, traced, "--out", str(out)],
                    "no int attribute latent_dim, resolution, channels", "--latent-dim and --resolution and --channels")
    one_line_error([*imp, traced, "--latent-dim", "8", "--channels", "3", "--out", str(out)],
                    "no int attribute resolution", "pass --resolution")
    one_line_error([*imp, scripted, "--resolution", "64", "--out", str(out)],
                    "resolution 32 but --resolution 64")
    one_line_error([*imp, traced, "--latent-dim", "8", "--resolution", "64", "--channels", "3",
                             "--out", str(out)], "shape (2, 3, 32, 32)", "declare (2, 3, 64, 64)", "--resolution")
    one_line_error([*imp, traced, "--latent-dim", "8", "--resolution", "32", "--channels", "2",
                             "--out", str(out)], "channels must be 1 or 3")
    one_line_error([*imp, traced, "--latent-dim", "5", "--resolution", "32", "--channels", "3",
                             "--out", str(out)], "fails on a batch of 2 latents of size 5")
    assert not out.exists()


class _RunsCode:
    """Unpickling this calls exec, which writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_files_that_are_not_torchscript_are_refused_unread(files, tmp_path, capsys, one_line_error):
    out = tmp_path / "ckpt"
    imp = ["import", "torchscript"]
    one_line_error([*imp, str(tmp_path / "nope.ts"), "--out", str(out)], "does not exist")
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not a module\n")
    one_line_error([*imp, str(bad), "--out", str(out)], "not a TorchScript module", "not a zip",
                    "torch.jit.save")
    torch.save(TinyGenerator().state_dict(), str(bad))
    one_line_error([*imp, str(bad), "--out", str(out)], "torch.save checkpoint", "never loaded")
    marker = tmp_path / "marker"
    torch.save({"g": TinyGenerator().state_dict(), "payload": _RunsCode(marker)}, str(bad))
    one_line_error([*imp, str(bad), "--out", str(out)], "torch.save checkpoint")
    assert not marker.exists()
    torch.load(str(bad), weights_only=False)  # the payload is real: an unrestricted load does run it
    assert marker.read_text() == "ran"
    truncated = files["g"].read_bytes()
    bad.write_bytes(truncated[: len(truncated) // 2])
    one_line_error([*imp, str(bad), "--out", str(out)], "not a TorchScript module")
    assert archive_problem(files["g"].read_bytes()) is None
    one_line_error(["import"], "ganlode import torchscript")
    assert not out.exists()


# ---------------------------------------------------------------- methods on an imported generator


def test_finetune_trains_the_scripted_weights_and_saves_them_beside_the_same_archive(files, imported, tmp_path):
    run = tmp_path / "ft"
    assert main(["transfer", "--source", str(imported), "--target", files["target"], "--method", "finetune",
                 "--out", str(run), *FAST]) == 0
    final = run / "checkpoints" / "final"
    assert (final / "generator.ts").read_bytes() == files["g"].read_bytes()  # the structure, unchanged
    tuned = load_checkpoint(str(final))
    stored = load_file(str(final / "model.safetensors"))
    state = tuned.generator.state_dict()
    assert all(torch.equal(state[k], stored[f"generator.{k}"]) for k in state)  # the trained weights, loaded
    original = files["scripted"].state_dict()
    assert not torch.equal(state["module.fc.weight"], original["fc.weight"])  # gradients flowed into the module
    assert tuned.config["arch"] == load_checkpoint(str(imported)).config["arch"] and not tuned.critic_from_scratch
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "ft.png")]) == 0


def test_minegan_mines_in_front_of_the_frozen_module(files, imported, tmp_path):
    run = tmp_path / "mine"
    assert main(["transfer", "--source", str(imported), "--target", files["target"], "--method", "minegan",
                 "--mining-steps", "2", "--out", str(run), *FAST]) == 0
    final = run / "checkpoints" / "final"
    ckpt = load_checkpoint(str(final))
    assert ckpt.config["model_kind"] == "minegan"
    state, original = ckpt.generator.state_dict(), files["scripted"].state_dict()
    assert all(torch.equal(state[f"module.{k}"], v) for k, v in original.items())  # G frozen while mining
    model = load_model(str(run))
    u = torch.randn(3, model.module.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.module(u), files["scripted"](model.module.miner(u)))
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "mine.png")]) == 0


@pytest.mark.parametrize("method,extra,needles", [
    ("freezed", [], ("--freeze-depth 2", "has no source critic", "--critic")),
    ("distill", [], ("--distill-weight 1.0", "has no source critic", "--critic", "finetune or minegan")),
    ("finetune", ["--freeze-depth", "1"], ("--freeze-depth 1", "drop --freeze-depth")),
    ("l2sp", [], ("--l2sp-on both", "--l2sp-on g")),
    ("scratch", [], ("cannot be initialised afresh",)),
    ("adabn", [], ("no BatchNorm layer",)),
    ("bsa", [], ("no BatchNorm layer",)),
])
def test_methods_it_cannot_serve_refuse_in_one_line(method, extra, needles, files, imported, tmp_path, capsys, one_line_error):
    run = tmp_path / "run"
    one_line_error(["transfer", "--source", str(imported), "--target", files["target"], "--method", method,
                             "--out", str(run), "--steps", "1", *extra], f"--method {method}", *needles)
    assert not run.exists()


# ---------------------------------------------------------------- a scripted critic


def test_a_scripted_critic_is_the_source_critic_freezed_keeps_its_blocks(files, tmp_path, capsys, one_line_error):
    out = tmp_path / "with-critic"
    assert main(["import", "torchscript", str(files["g"]), "--critic", str(files["d"]), "--out", str(out)]) == 0
    assert "as the critic" in capsys.readouterr().out
    ckpt = load_checkpoint(str(out))
    assert (out / "critic.ts").read_bytes() == files["d"].read_bytes()
    assert ckpt.config["critic_source"] == "torchscript" and not ckpt.critic_from_scratch
    d = ckpt.critic
    assert isinstance(d, TorchScriptCritic)
    interface.check_critic(d)
    assert interface.critic_depth(d) == 2
    x = torch.rand(3, CHANNELS, RES, RES) * 2 - 1
    with torch.no_grad():
        assert torch.equal(d(x), files["critic"](x).view(3))
        assert all(torch.equal(a, b) for a, b in zip(d.features(x), files["critic"].features(x)))

    run = tmp_path / "fd"
    assert main(["transfer", "--source", str(out), "--target", files["target"], "--method", "freezed",
                 "--freeze-depth", "1", "--out", str(run), *FAST]) == 0
    tuned = load_checkpoint(str(run / "checkpoints" / "final")).critic.state_dict()
    source = files["critic"].state_dict()
    assert torch.equal(tuned["module.blocks.0.0.weight"], source["blocks.0.0.weight"])  # frozen: bit-identical
    assert not torch.equal(tuned["module.blocks.1.0.weight"], source["blocks.1.0.weight"])  # trained

    lacking = tmp_path / "scores-only.ts"
    torch.jit.save(torch.jit.script(ScoresOnly()), str(lacking))
    one_line_error(["import", "torchscript", str(files["g"]), "--critic", str(lacking), "--out",
                             str(tmp_path / "x")], "has no `blocks`", "FreezeD")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- multi-source mining


def test_multi_source_mining_takes_imported_sources(files, imported, tmp_path, capsys, one_line_error):
    second = tmp_path / "traced"
    assert main(["import", "torchscript", str(files["traced_path"]), "--latent-dim", "8", "--resolution", "32",
                 "--channels", "3", "--out", str(second)]) == 0
    run = tmp_path / "mined"
    assert main(["mine", "--source", str(imported), "--source", str(second), "--target", files["target"],
                 "--out", str(run), "--in-process", "--mining-steps", "2", "--finetune-steps", "0", "--batch", "8",
                 "--selector", "count", "--eval-n", "4", "--no-progress"]) == 0
    mixture = load_model(str(run)).module
    for source, module in zip(mixture.sources, (files["scripted"], files["traced"]), strict=True):
        state = source.generator.state_dict()  # mining alone: every G frozen, as imported
        assert all(torch.equal(state[f"module.{k}"], v) for k, v in module.state_dict().items())
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "mixed.png")]) == 0

    # the mined checkpoint rebuilds each scripted source from the generator.ts of the checkpoint it names
    second.rename(tmp_path / "moved")
    capsys.readouterr()
    one_line_error(["sample", str(run), "--n", "4", "--out", str(tmp_path / "again.png")],
                    "source 1", "which is gone")


# ---------------------------------------------------------------- the checkpoint's files


def test_a_checkpoint_whose_module_is_missing_or_swapped_is_refused(files, imported, tmp_path, capsys, one_line_error):
    broken = tmp_path / "broken"
    shutil.copytree(imported, broken)
    (broken / "generator.ts").write_bytes(files["traced_path"].read_bytes())
    one_line_error(["sample", str(broken), "--out", str(tmp_path / "a.png")], "generator.ts",
                    "sha256 differs", "different models")
    (broken / "generator.ts").unlink()
    one_line_error(["sample", str(broken), "--out", str(tmp_path / "a.png")], "lacks generator.ts",
                    "incomplete")


def test_the_scratch_critic_is_a_registry_critic_of_the_generators_size():
    assert scratch_critic(64, 1, 8) == {"name": "dcgan", "resolution": 64, "channels": 1, "latent_dim": 8,
                                        "g_width": 4, "d_width": 32}
    big = scratch_critic(256, 3, 8)
    assert (big["name"], big["resolution"], big["channels"]) == ("stylegan2", 256, 3)
    with pytest.raises(UserError, match="--critic"):
        scratch_critic(48, 3, 8)
