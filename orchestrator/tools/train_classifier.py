"""(Re)train the evaluation feature classifier shipped in ``orchestrator/assets/classifier``::

    python -m ganlode.orchestrator.tools.train_classifier --out orchestrator/assets/classifier

It trains on the training pools of every built-in 28x28 domain (mnist5k, animals, glyphs,
and fashion where installed) and records its accuracy on their held-out evaluation splits.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from ...methods.classifier import FEATURE_DIM, FeatureClassifier
from .. import data, storage
from ..artifacts.rundir import CONFIG_FILE, WEIGHTS_FILE
from ..errors import UserError

DOMAINS = ("mnist5k", "animals", "glyphs", "fashion")


def _training_sets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    xs, ys, xe, ye, classes = [], [], [], [], []
    for name in DOMAINS:
        try:
            names = data.class_names(name)
            train = data.load_target(name, seed=0, split="train")
            held = data.load_target(name, seed=0, split="eval")
        except UserError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        index = {c: len(classes) + i for i, c in enumerate(names)}
        classes += [f"{name}:{c}" for c in names]
        xs.append(train.images)
        ys.append(torch.tensor([index[c] for c in train.labels]))
        xe.append(held.images)
        ye.append(torch.tensor([index[c] for c in held.labels]))
    return torch.cat(xs), torch.cat(ys), torch.cat(xe), torch.cat(ye), classes


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels, so features do not hinge on exact centring."""
    pad = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


def train_classifier(epochs: int = 6, batch: int = 128, seed: int = 0) -> tuple[FeatureClassifier, dict]:
    torch.manual_seed(seed)
    x, y, xe, ye, classes = _training_sets()
    net = FeatureClassifier(len(classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(net(_augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}", file=sys.stderr)
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xe[i:i + 1024]).argmax(1) for i in range(0, len(xe), 1024)])
    domains = sorted({c.split(":")[0] for c in classes})
    acc = {d: float((pred == ye)[torch.tensor([classes[i].startswith(d + ":") for i in ye])].float().mean()) for d in domains}
    info = {
        "classes": classes,
        "feature_dim": FEATURE_DIM,
        "test_accuracy": {"all": float((pred == ye).float().mean()), **acc},
        "train_images": len(x),
        "test_images": len(xe),
        "epochs": epochs,
        "seed": seed,
        "wall_s": round(time.time() - t0, 1),
    }
    return net, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="(Re)train the evaluation feature classifier.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    net, info = train_classifier(epochs=args.epochs, seed=args.seed)
    info["command"] = "python -m ganlode.orchestrator.tools.train_classifier " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    info["created"] = storage.utc_now()
    os.makedirs(args.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(args.out, WEIGHTS_FILE))
    with open(os.path.join(args.out, CONFIG_FILE), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info["test_accuracy"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
