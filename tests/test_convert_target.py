"""``--convert-target``: a target of another image size or channel count than the source's is
refused in one line naming the flag, or, with it, converted (bicubic antialiased resizing, gray
repeated or RGB to BT.601 luma) for training and for the validation and test references alike,
and the run records how. Also: ``ganlode tune`` refuses, before any trial, a search that would
read the trained weights of a source critic that starts from scratch, as ``ganlode transfer`` does."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ganlode.methods import architectures
from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator.artifacts import checkpoint
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.data.convert import FLAG, LUMA, Conversion, resize, to_channels
from ganlode.orchestrator.data.spec import load_target
from ganlode.orchestrator.search.spec import SearchSpec, check_spec, with_default_space

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RGB32 = GANConfig(latent_dim=8, g_width=8, d_width=8, resolution=32, channels=3)
GRAY_TARGET = "mnist5k:7@12"  # 1 x 28 x 28
FAST = ["--steps", "2", "--eval-every", "0", "--eval-n", "4", "--no-progress", "--batch", "8", "--n-critic", "1"]


@pytest.fixture(scope="module")
def rgb_source(tmp_path_factory) -> str:
    """A tiny 32 px colour DCGAN checkpoint (random weights)."""
    torch.manual_seed(0)
    g, d = build_gan(RGB32)
    path = str(tmp_path_factory.mktemp("rgb") / "ckpt")
    checkpoint.save_checkpoint(path, {"model_kind": "gan", "arch": architectures.to_dict(RGB32),
                                      "train": {"loss": "ns-r1"}}, g.eval(), d.eval())
    return path


# ---------------------------------------------------------------- closed forms of the conversion


@pytest.mark.parametrize("shape,to", [((1, 28), (3, 32)), ((3, 32), (1, 28)), ((3, 64), (3, 32)), ((1, 28), (1, 64))])
def test_a_constant_image_converts_to_that_constant(shape, to):
    (c, r), (c2, r2) = shape, to
    x = torch.full((2, c, r, r), -0.3)
    y = Conversion(c, r, c2, r2)(x)
    assert y.shape == (2, c2, r2, r2)
    assert torch.allclose(y, torch.full_like(y, -0.3), atol=1e-6)


def test_gray_to_rgb_to_gray_is_the_identity_and_luma_weighs_601():
    gray = torch.rand(3, 1, 28, 28) * 2 - 1
    rgb = to_channels(gray, 3)
    assert torch.equal(rgb, gray.expand(3, 3, 28, 28))
    assert torch.allclose(to_channels(rgb, 1), gray, atol=1e-6)
    primaries = torch.eye(3).view(3, 3, 1, 1)  # pure R, G, B (in [0, 1])
    assert to_channels(primaries, 1).flatten().tolist() == pytest.approx(list(LUMA))
    # at the same size the whole conversion is the channel map alone
    assert torch.allclose(Conversion(3, 28, 1, 28)(Conversion(1, 28, 3, 28)(gray)), gray, atol=1e-6)


def test_halving_a_checkerboard_is_antialiased_to_its_mean():
    board = (torch.arange(64).view(1, 64) + torch.arange(64).view(64, 1)) % 2 * 2.0 - 1  # +-1, one pixel each
    for size in (32, 16):  # halved, quartered: each pixel a symmetric average of as many +1s as -1s
        shrunk = resize(board.view(1, 1, 64, 64), size)[..., 2:-2, 2:-2]  # the border's kernel is cut and renormalised
        assert shrunk.abs().max() < 1e-5
    up = resize(torch.rand(1, 3, 28, 28) * 2 - 1, 32)
    assert up.shape == (1, 3, 32, 32) and up.abs().max() <= 1  # clamped: bicubic overshoot never leaves [-1, 1]


# ---------------------------------------------------------------- the flag, command by command


@pytest.mark.parametrize("command", ["transfer", "mine", "tune"])
def test_a_mismatch_without_the_flag_is_one_line_naming_it(command, rgb_source, tmp_path, capsys, one_line_error):
    out = tmp_path / "out"
    argv = {"transfer": ["transfer", "--source", rgb_source, "--method", "finetune", *FAST],
            "mine": ["mine", "--source", rgb_source, "--source", rgb_source, "--no-progress"],
            "tune": ["tune", "--source", rgb_source, "--method", "finetune", "--trials", "1", "--steps", "2"]}[command]
    one_line_error([*argv, "--target", GRAY_TARGET, "--out", str(out)],
                    f"target {GRAY_TARGET} holds 1x28x28 images", " 3x32x32: ", FLAG)
    assert not out.exists()


def test_a_gray_28px_target_is_converted_for_a_colour_32px_source(rgb_source, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["transfer", "--source", rgb_source, "--target", GRAY_TARGET, "--method", "finetune", *FAST,
                 "--out", str(run), FLAG]) == 0
    config = json.loads((run / "config.json").read_text())
    recorded = {"from": [1, 28, 28], "to": [3, 32, 32], "resize": "bicubic, antialiased, clamped to [-1, 1]",
                "channels": "gray repeated into R, G and B"}
    assert config["target_conversion"] == recorded and config["settings"]["convert_target"] is True
    assert (config["data"]["channels"], config["data"]["resolution"]) == (3, 32)  # what it trained on
    model = json.loads((run / "checkpoints" / "final" / "config.json").read_text())
    assert model["target_conversion"] == recorded
    # the training draw is the target's, converted: the same images, labels and provenance counts
    raw = load_target(GRAY_TARGET, seed=0)
    assert config["data"]["counts"] == raw.provenance()["counts"]
    # `ganlode eval` scores the run against its target converted the same way
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4


# ---------------------------------------------------------------- tune and a source critic from scratch


class _TinyGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = 8, 32, 3
        self.fc = nn.Linear(8, 3 * 32 * 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 3, 32, 32)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> str:
    """A TorchScript generator imported without a critic: its critic starts from scratch."""
    root = tmp_path_factory.mktemp("scripted")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(_TinyGenerator()), str(root / "g.ts"))
    assert main(["import", "torchscript", str(root / "g.ts"), "--out", str(root / "imported")]) == 0
    return str(root / "imported")


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("method,needles", [
    ("freezed", ("--method freezed reads the source critic", "--freeze-depth", "finetune or minegan")),
    ("finetune", ("(--distill-weight 0.01)", "search a space that leaves out distill_weight")),  # its low corner
    ("l2sp", ("--l2sp-on", "l2sp_on: g")),
])
def test_tune_refuses_a_search_that_reads_a_scratch_critic(method, needles, imported, tmp_path, capsys, one_line_error):
    out = tmp_path / "search"
    one_line_error(["tune", "--source", imported, "--target", GRAY_TARGET, FLAG, "--method", method,
                             "--trials", "1", "--steps", "2", "--out", str(out)],
                    "has no source critic", "ganlode import torchscript", *needles)
    assert not out.exists()  # refused before the search was written, so no trial started


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_tune_takes_a_scratch_critic_for_methods_that_only_train_it(imported, tmp_path):
    for method, space in (("minegan", None), ("l2sp", {"l2sp_weight": {"loguniform": [0.01, 1.0]}, "l2sp_on": "g"})):
        spec = SearchSpec(sources=(imported,), target=GRAY_TARGET, method=method, space=space or {}, trials=1,
                          concurrent=1, steps=2, eval_every=1, out=str(tmp_path / method), convert_target=True)
        prepared = check_spec(spec if space else with_default_space(spec))
        assert prepared.space.method == method
