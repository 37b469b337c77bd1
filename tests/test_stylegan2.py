"""StyleGAN2 (methods/stylegan2) and ``ganlode import stylegan2``: closed forms of its layers, the
interface, rosinality's key layout, and an import that samples bit for bit what the source did,
while a file carrying any other pickled object is refused before it can run."""

from __future__ import annotations

import argparse
import hashlib
import json
import math

import pytest
import torch

from ganlode.methods import architectures, interface
from ganlode.methods.finetune import frozen_critic_parameters
from ganlode.methods.stylegan2 import Discriminator, Generator, StyleGAN2Config, build_stylegan2, upfirdn2d
from ganlode.methods.stylegan2.layers import Blur, EqualLinear, Upsample, fused_leaky_relu, make_kernel
from ganlode.methods.stylegan2.model import minibatch_stddev, stddev_group
from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.importers.stylegan2 import infer_arch

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# 32 px, narrow: every test here builds in milliseconds.
CFG = StyleGAN2Config(resolution=32, style_dim=16, n_mlp=2, channel_multiplier=2, base_channels=16)


def _nets(cfg: StyleGAN2Config = CFG, seed: int = 0) -> tuple[Generator, Discriminator]:
    """A random pair whose zero-initialised biases and noise strengths are set too, so every path counts."""
    torch.manual_seed(seed)
    g, d = build_stylegan2(cfg)
    with torch.no_grad():
        for m in (g, d):
            for name, p in m.named_parameters():
                if name.endswith("bias") or name.endswith("noise.weight"):
                    p.add_(0.1 * torch.randn(p.shape))
    return g.eval(), d.eval()


def _rosinality_file(path, g: Generator, d: Discriminator | None, *, args: bool = True, **extra) -> None:
    """A checkpoint in the layout rosinality's train.py saves (convert_weight.py's: no args, no d)."""
    ckpt = {"g_ema": g.state_dict(), "g": g.state_dict(),
            "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0, 0.99)}]}, "ada_aug_p": 0.0, **extra}
    if d is not None:
        ckpt["d"] = d.state_dict()
    if args:
        cfg = g.cfg
        ckpt["args"] = argparse.Namespace(arch="stylegan2", path="data.lmdb", iter=800000, batch=16, size=cfg.resolution,
                                          latent=cfg.style_dim, n_mlp=cfg.n_mlp, channel_multiplier=cfg.channel_multiplier,
                                          lr=0.002, augment=False)
    torch.save(ckpt, str(path))


# ---------------------------------------------------------------- closed forms of the layers


def test_fir_of_an_impulse_is_the_kernel_and_upsampling_keeps_a_constant():
    kernel = make_kernel((1, 3, 3, 1))
    assert torch.allclose(kernel, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    delta = torch.zeros(1, 1, 5, 5)
    delta[0, 0, 2, 2] = 1
    full = upfirdn2d(delta, kernel, pad=(3, 3))  # the full convolution of a delta: the kernel, where the delta was
    assert full.shape == (1, 1, 8, 8) and torch.allclose(full[0, 0, 2:6, 2:6], kernel)
    assert torch.allclose(full.sum(), torch.tensor(1.0))

    const = torch.full((2, 3, 8, 8), 0.7)
    up = Upsample()(const)  # zeros inserted, blur times factor^2: the interior stays 0.7
    assert up.shape == (2, 3, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.tensor(0.7))
    down = upfirdn2d(const, kernel, down=2, pad=(1, 1))
    assert down.shape == (2, 3, 4, 4) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.tensor(0.7))
    blurred = Blur((1, 3, 3, 1), pad=(2, 1), upsample_factor=2)(const)
    assert torch.allclose(blurred[:, :, 2:-2, 2:-2], torch.tensor(4 * 0.7))


def test_fused_leaky_relu_and_equalized_linear():
    x = torch.tensor([[-2.0, 0.5], [1.0, -0.25]])
    b = torch.tensor([1.0, -1.0])
    pre = x + b
    expected = math.sqrt(2) * torch.where(pre > 0, pre, 0.2 * pre)
    assert torch.allclose(fused_leaky_relu(x, b), expected)

    lin = EqualLinear(4, 3, bias_init=0.5, lr_mul=0.01)
    with torch.no_grad():
        lin.weight.normal_()
    z = torch.randn(5, 4)
    assert torch.allclose(lin(z), z @ (lin.weight * 0.01 / 2).T + 0.5 * 0.01, atol=1e-6)


def test_demodulated_weights_have_unit_norm_per_output_channel():
    g, _ = _nets()
    w = g.mapping(torch.randn(3, CFG.style_dim))
    for conv in [g.conv1.conv, g.convs[0].conv, g.convs[1].conv]:
        weight = conv.modulated_weight(w)  # B x out x in x k x k
        assert torch.allclose(weight.pow(2).sum([2, 3, 4]), torch.ones(3, conv.out_channels), atol=1e-5)
    rgb = g.to_rgb1.conv.modulated_weight(w)  # ToRGB is modulated, not demodulated
    style = g.to_rgb1.conv.modulation(w)
    assert torch.allclose(rgb, g.to_rgb1.conv.scale * g.to_rgb1.conv.weight * style.view(3, 1, -1, 1, 1))


def test_minibatch_stddev_closed_form_and_group_size():
    assert [stddev_group(b, 4) for b in (1, 2, 3, 4, 6, 8, 50)] == [1, 2, 3, 4, 3, 4, 2]
    a = torch.randn(1, 5, 4, 4)
    x = torch.cat([a, -a])  # one group of 2: per element std = |a|
    y = minibatch_stddev(x, 2)
    assert y.shape == (2, 1, 4, 4)
    assert torch.allclose(y, torch.sqrt(a.pow(2) + 1e-8).mean().expand(2, 1, 4, 4))
    _, d = _nets()
    assert d(torch.randn(6, 3, 32, 32)).shape == (6,)  # rosinality's min(B, 4) would fail on 6


# ---------------------------------------------------------------- the architecture and the interface


def test_config_registry_round_trip_and_validation():
    d = architectures.to_dict(CFG)
    assert d["name"] == "stylegan2" and json.loads(json.dumps(d)) == d
    assert architectures.from_dict(d) == CFG
    g, c = architectures.build(d)
    assert architectures.config_of(g) == CFG
    for bad in ({"resolution": 48}, {"resolution": 16}, {"channels": 2}, {"style_dim": 0}):
        with pytest.raises(ValueError):
            StyleGAN2Config(**{**CFG.to_dict(), **bad})
    # rosinality's channel table: 512 up to 32 px, then 256, 128, ... x channel_multiplier
    full = StyleGAN2Config(resolution=1024)
    assert [full.width(2 ** i) for i in range(2, 11)] == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    assert [StyleGAN2Config(resolution=256, channel_multiplier=1).width(2 ** i) for i in range(5, 9)] == [512, 256, 128, 64]


def test_interface_blocks_and_features():
    g, d = _nets()
    interface.check_generator(g)
    interface.check_critic(d)
    assert (g.latent_dim, g.resolution, g.channels, g.num_classes) == (16, 32, 3, 0)
    assert isinstance(d.blocks, torch.nn.ModuleList) and d.blocks is d.convs
    assert interface.critic_depth(d) == 4  # fromRGB + 32->16, 16->8, 8->4
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, 32, 32)
    feats = d.features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 32, 32), (2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    assert torch.equal(d.head(feats[-1]), d(x))
    frozen = frozen_critic_parameters(d, 2)  # freeze depth 2 = fromRGB and the first residual block
    assert {id(p) for p in frozen} == {id(p) for p in [*d.convs[0].parameters(), *d.convs[1].parameters()]}


def test_mapping_synthesis_noise_and_mean_latent():
    g, _ = _nets()
    z = torch.randn(2, 16)
    w = g.mapping(z)
    x = g(z)
    assert torch.equal(g(z), x)  # the stored noise: same z, same image
    assert torch.equal(g.synthesis(w), x) and torch.equal(g(w, input_is_w=True), x)
    assert torch.equal(g.synthesis(w.unsqueeze(1).repeat(1, CFG.n_latent, 1)), x)  # w+ of one w
    assert not torch.equal(g(z, randomize_noise=True), x)  # the noise strengths are not zero here
    assert g.synthesis(w, noise=g.noise_buffers()).equal(x)
    mean = g.mean_latent(64, generator=torch.Generator().manual_seed(0))
    assert mean.shape == (1, 16)
    assert torch.allclose(mean, g.mapping(torch.randn(64, 16, generator=torch.Generator().manual_seed(0))).mean(0))


def test_resolution_64_and_one_channel():
    cfg = StyleGAN2Config(resolution=64, channels=1, style_dim=8, n_mlp=1, channel_multiplier=1, base_channels=16)
    g, d = build_stylegan2(cfg)
    assert cfg.num_layers == 9 and cfg.n_latent == 10
    assert len(g.convs) == 8 and len(g.to_rgbs) == 4 and len(d.blocks) == 5
    assert [b.shape[-1] for b in g.noise_buffers()] == [4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert g.convs[6].conv.out_channels == 8  # 64 px: base * multiplier / 2
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 1, 64, 64) and d(x).shape == (2,)
    assert [f.shape[-1] for f in d.features(x)] == [64, 32, 16, 8, 4]


def test_rosinality_key_names():
    g, d = build_stylegan2(CFG)
    gk, dk = set(g.state_dict()), set(d.state_dict())
    for key in ("style.1.weight", "style.2.bias", "input.input", "conv1.conv.weight", "conv1.conv.modulation.weight",
                "conv1.conv.modulation.bias", "conv1.noise.weight", "conv1.activate.bias", "to_rgb1.conv.weight",
                "to_rgb1.bias", "convs.0.conv.blur.kernel", "convs.5.activate.bias", "to_rgbs.2.upsample.kernel",
                "to_rgbs.2.conv.modulation.weight", "noises.noise_0", "noises.noise_6"):
        assert key in gk, key
    assert "noises.noise_7" not in gk and "convs.6.conv.weight" not in gk
    for key in ("convs.0.0.weight", "convs.0.1.bias", "convs.1.conv1.0.weight", "convs.1.conv2.0.kernel",
                "convs.1.conv2.1.weight", "convs.1.conv2.2.bias", "convs.3.skip.0.kernel", "convs.3.skip.1.weight",
                "final_conv.0.weight", "final_conv.1.bias", "final_linear.0.weight", "final_linear.1.bias"):
        assert key in dk, key
    assert g.state_dict()["conv1.conv.weight"].shape == (1, 16, 16, 3, 3)


@pytest.mark.parametrize("cfg", [CFG, StyleGAN2Config(resolution=64, style_dim=8, n_mlp=3, channel_multiplier=1,
                                                      base_channels=16)])
def test_architecture_is_read_off_the_weights(cfg):
    assert StyleGAN2Config(**{**cfg.to_dict(), **infer_arch(Generator(cfg).state_dict(), "f.pt")}) == cfg


# ---------------------------------------------------------------- ganlode import stylegan2


def test_import_samples_bit_for_bit_what_the_source_does(tmp_path, capsys, one_line_error):
    g, d = _nets()
    src, out = tmp_path / "run.pt", tmp_path / "imported"
    _rosinality_file(src, g, d)
    assert main(["import", "stylegan2", str(src), "--out", str(out)]) == 0
    assert "as the critic" in capsys.readouterr().out

    ckpt = load_checkpoint(str(out))
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x = g(z)
        assert torch.equal(ckpt.generator(z), x)
        assert torch.equal(ckpt.critic(x), d(x))
    assert ckpt.arch == CFG
    imported = ckpt.config["imported"]
    assert imported["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert imported["args"]["size"] == 32 and imported["args"]["iter"] == 800000
    assert (imported["generator"], imported["critic"]) == ("g_ema", "d")
    assert ckpt.config["command"] == f"ganlode import stylegan2 {src} --out {out}"
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0  # a checkpoint like any other
    assert (tmp_path / "grid.png").stat().st_size > 0

    # an existing checkpoint is never overwritten
    before = (out / "model.safetensors").read_bytes()
    one_line_error(["import", "stylegan2", str(src), "--out", str(out)], "exists already")
    assert (out / "model.safetensors").read_bytes() == before


def test_a_converted_file_without_args_or_critic(tmp_path, capsys):
    """convert_weight.py's layout: g_ema and latent_avg only; the shapes give the architecture."""
    cfg = StyleGAN2Config(resolution=64, style_dim=8, n_mlp=1, channel_multiplier=1, base_channels=16)
    g, _ = _nets(cfg)
    w_avg = torch.randn(8)
    src, out = tmp_path / "converted.pt", tmp_path / "ckpt"
    torch.save({"g_ema": g.state_dict(), "latent_avg": w_avg}, str(src))
    assert main(["import", "stylegan2", str(src), "--out", str(out), "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["critic"] is False and reply["arch"]["channel_multiplier"] == 1
    ckpt = load_checkpoint(str(out))
    assert ckpt.critic is None and ckpt.arch == cfg
    assert torch.equal(ckpt.extra["w_avg"], w_avg.view(1, 8))
    z = torch.randn(2, 8)
    assert torch.equal(ckpt.generator(z), g(z))


class _Plain:
    """Any class of ours: unpickling it would import this module, so it is refused."""


class _RunsCode:
    """Unpickling this calls exec, which writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.mark.parametrize("payload,named", [("code", "global exec"), ("instance", "_Plain")])
def test_a_file_with_another_pickled_object_is_refused_and_nothing_runs(payload, named, tmp_path, capsys, one_line_error):
    g, d = _nets()
    marker = tmp_path / "marker"
    src, out = tmp_path / "evil.pt", tmp_path / "ckpt"
    _rosinality_file(src, g, d, extra=_RunsCode(marker) if payload == "code" else _Plain())
    line = one_line_error(["import", "stylegan2", str(src), "--out", str(out)], named, "weights_only")
    assert "re-save" in line
    assert not marker.exists() and not out.exists()
    if payload == "code":  # the payload is real: an unrestricted load does run it
        torch.load(str(src), weights_only=False)
        assert marker.read_text() == "ran"


def test_weights_that_do_not_match_are_refused_by_name(tmp_path, capsys, one_line_error):
    g, d = _nets()
    src, out = tmp_path / "odd.pt", tmp_path / "ckpt"
    gs = {**g.state_dict(), "mystery.weight": torch.zeros(3)}
    ds = {k: v for k, v in d.state_dict().items() if k != "final_linear.1.bias"}
    torch.save({"g_ema": gs, "d": d.state_dict()}, str(src))
    one_line_error(["import", "stylegan2", str(src), "--out", str(out)], "'g_ema'", "unexpected keys mystery.weight")
    torch.save({"g_ema": g.state_dict(), "d": ds}, str(src))
    one_line_error(["import", "stylegan2", str(src), "--out", str(out)], "'d'", "missing keys final_linear.1.bias")
    args = argparse.Namespace(size=32, latent=16, n_mlp=3, channel_multiplier=2)  # args that do not describe the weights
    torch.save({"g_ema": g.state_dict(), "args": args}, str(src))
    one_line_error(["import", "stylegan2", str(src), "--out", str(out)], "n_mlp 3", "missing keys style.3.bias")
    assert not out.exists()


def test_missing_corrupt_and_foreign_files(tmp_path, capsys, one_line_error):
    out = tmp_path / "ckpt"
    one_line_error(["import", "stylegan2", str(tmp_path / "nope.pt"), "--out", str(out)], "does not exist")
    bad = tmp_path / "bad.pt"
    for blob in (b"", b"not a checkpoint\n", bytes(range(256)) * 8):
        bad.write_bytes(blob)
        one_line_error(["import", "stylegan2", str(bad), "--out", str(out)], "not a readable torch checkpoint")
    g, d = _nets()
    _rosinality_file(bad, g, d)
    bad.write_bytes(bad.read_bytes()[:4000])  # truncated
    one_line_error(["import", "stylegan2", str(bad), "--out", str(out)], "not a readable torch checkpoint")
    torch.save({"state_dict": g.state_dict()}, str(bad))
    one_line_error(["import", "stylegan2", str(bad), "--out", str(out)], "no 'g_ema'", "state_dict")
    torch.save({"g_ema": g.state_dict(), "args": argparse.Namespace(arch="swagan", size=32)}, str(bad))
    one_line_error(["import", "stylegan2", str(bad), "--out", str(out)], "swagan")
    one_line_error(["import"], "ganlode import stylegan2")
    assert not out.exists()
