"""Rebuild the shipped zoo: pretrain every source GAN, then measure each against every domain.

    python -m ganlode.orchestrator.tools.build_zoo --steps 4000 [--only digits-0to4] [--jobs 2]

Each model is made by a plain ``ganlode pretrain`` command (recorded in its config.json), so
its provenance is the command, seed and data that made it. Afterwards the FID of each model's
samples against the test split of each zoo domain of its own image size is written into its
config.json: the gray 28 px zoo with the classifier's features, the colour 32 px zoo with the
FID Inception's (``auto`` features). The gray models take ``--steps``; the colour models carry
their own settings (``COLOUR``), so the StyleGAN2's differ from the DCGANs'.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from .. import storage
from ..artifacts.loaders import load_model
from ..artifacts.rundir import CONFIG_FILE
from ..artifacts.zoo import PREFIX, zoo_root
from ..evaluation.protocol import reference, score

ZOO = {
    "digits-0to4": "mnist5k:0-4",
    "digits-5to9": "mnist5k:5-9",
    "animals-0to4": "animals:0-4",
    "animals-5to9": "animals:5-9",
    "glyphs-AtoF": "glyphs:A-F",
    "glyphs-GtoL": "glyphs:G-L",
    "glyphs-MtoR": "glyphs:M-R",
    "glyphs-StoZ": "glyphs:S-Z",
}
# The yellow faces of Unicode's smileys-emotion group (its hearts, cat and monkey faces left out).
FACES = ("face-smiling", "face-affection", "face-tongue", "face-hand", "face-neutral-skeptical", "face-sleepy",
         "face-unwell", "face-hat", "face-glasses", "face-concerned", "face-negative")
# The square and round buttons of Unicode's symbols group (its arrows, keycaps, zodiac, signs, letters).
BUTTONS = ("av-symbol", "keycap", "zodiac", "transport-sign", "alphanum", "arrow")
COLOUR_DOMAINS = {
    "emoji-faces": "emoji-sub:" + ",".join(FACES),
    "emoji-flags": "emoji:flags",
    "emoji-buttons": "emoji-sub:" + ",".join(BUTTONS),
}
STYLEGAN2_RGB = ["--arch", "stylegan2", "--latent-dim", "64", "--g-width", "32", "--n-mlp", "4", "--lr", "2e-3",
                 "--batch", "16"]
COLOUR = {"emoji-faces": [*STYLEGAN2_RGB, "--steps", "4000"],
          "emoji-flags": [*STYLEGAN2_RGB, "--steps", "12000", "--select-every", "1000"],
          "emoji-buttons": ["--augment", "translation,color", "--steps", "24000", "--select-every", "2000"]}
ZOO.update(COLOUR_DOMAINS)


def _ganlode() -> str:
    """The ganlode script of this environment (so the recorded command reads `ganlode ...`)."""
    script = os.path.join(os.path.dirname(sys.executable), "ganlode")
    return script if os.path.exists(script) else "ganlode"


def pretrain_commands(steps: int, seed: int, names: list[str]) -> list[list[str]]:
    """One `ganlode pretrain` per model, run inside the zoo folder (relative --out)."""
    return [
        [_ganlode(), "pretrain", "--data", ZOO[n], "--out", n, *COLOUR.get(n, ["--steps", str(steps)]),
         "--seed", str(seed), "--fp16", "--threads", "1", "--no-progress"]
        for n in names
    ]


def domains_of(name: str) -> dict[str, str]:
    """The zoo domains a model is measured against: those of its own image size and channels."""
    return COLOUR_DOMAINS if name in COLOUR_DOMAINS else {n: s for n, s in ZOO.items() if n not in COLOUR_DOMAINS}


def measure(names: list[str]) -> None:
    """Write each model's FID against the test split of every zoo domain of its size into its config.json."""
    refs: dict[str, object] = {}
    for n in names:
        domains = domains_of(n)
        for d, spec in domains.items():
            if d not in refs:
                refs[d] = reference(spec)
        model = load_model(f"{PREFIX}{n}")
        fids = {d: round(score(model.sampler, refs[d])["fid"], 3) for d in domains}
        path = storage.join(zoo_root(), n, CONFIG_FILE)
        cfg = storage.read_json(path)
        cfg["zoo"] = {"fid": fids, "domains": domains, "features": refs[n].feature_kind,
                      "n_reference": {d: len(refs[d]) for d in domains}}
        storage.write_json_atomic(path, cfg)
        print(n, fids, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", choices=sorted(ZOO), help="rebuild only these (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="pretrain runs at once (one thread each)")
    p.add_argument("--measure-only", action="store_true")
    args = p.parse_args(argv)
    names = args.only or list(ZOO)
    if not args.measure_only:
        pending = pretrain_commands(args.steps, args.seed, names)
        running: list[subprocess.Popen] = []
        t0 = time.time()
        while pending or running:
            while pending and len(running) < args.jobs:
                cmd = pending.pop(0)
                print("$ ganlode", " ".join(cmd[1:]), flush=True)
                running.append(subprocess.Popen(cmd, cwd=zoo_root()))
            time.sleep(2)
            for proc in list(running):
                if proc.poll() is not None:
                    running.remove(proc)
                    if proc.returncode != 0:
                        print(f"failed ({proc.returncode}): {' '.join(proc.args)}", file=sys.stderr)
                        return 1
        print(f"pretrained {len(names)} models in {time.time() - t0:.0f} s")
    measure(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
