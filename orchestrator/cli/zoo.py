"""``ganlode zoo``: the shipped source GANs, their provenance and measured quality."""

from __future__ import annotations

import click

from . import options
from .base import Command

EPILOG = """\
examples:
  ganlode zoo
  ganlode zoo --verbose
  ganlode zoo --json                 the same as one JSON object
  ganlode sample zoo:animals-5to9 --out animals.png
"""


def zoo_table() -> list[dict]:
    from .. import storage
    from ..artifacts.rundir import CONFIG_FILE
    from ..artifacts.zoo import zoo_names, zoo_root

    rows = []
    for name in zoo_names():
        cfg = storage.read_json(storage.join(zoo_root(), name, CONFIG_FILE))
        zoo = cfg.get("zoo", {})
        arch = cfg.get("arch", {})
        rows.append({"name": name, "data": cfg.get("data", {}).get("spec", "?"), "arch": arch.get("name", "dcgan"),
                     "size": f"{arch.get('resolution')}px x{arch.get('channels')}", "steps": cfg.get("steps"),
                     "wall_s": cfg.get("wall_s"), "fid": zoo.get("fid", {}), "features": zoo.get("features", "classifier"),
                     "command": cfg.get("command"), "seed": cfg.get("train", {}).get("seed")})
    return rows


def groups(rows: list[dict]) -> list[tuple[str, list[str], list[dict]]]:
    """The zoo's models by the domains they were measured against (one per image size): (features, domains, rows)."""
    out: dict[tuple[str, ...], tuple[str, list[str], list[dict]]] = {}
    for r in rows:
        key = tuple(r["fid"])
        out.setdefault(key, (r["features"], list(key), []))[2].append(r)
    return list(out.values())


@click.command("zoo", cls=Command, epilog=EPILOG, short_help="list the shipped source GANs with their FIDs",
               help="List the shipped source GANs: architecture, image size, training data, steps, wall time, and FID "
                    "against the test split of every zoo domain of the same size (the gray 28 px zoo with the "
                    "classifier's features, the colour 32 px zoo with the FID Inception's).")
@click.option("--verbose", "-v", is_flag=True, help="also print each model's command")
@options.json_output()
def command(verbose: bool, as_json: bool) -> int:
    rows = zoo_table()
    if as_json:
        from .output import emit_json

        emit_json({"command": "zoo", "split": "held-out", "domains": [r["name"] for r in rows],
                   "models": [{**r, "use_as": f"zoo:{r['name']}"} for r in rows]})
        return 0
    if not rows:
        print("the zoo is empty: this installation ships no models")
        return 0
    for n, (features, domains, members) in enumerate(groups(rows)):
        if n:
            print()
        head = (f"{'name':<14} {'arch':<9} {'size':<8} {'steps':>6} {'wall':>6}  "
                + " ".join(f"{'FID vs ' + d:>20}" for d in domains))
        print(head)
        for r in members:
            fids = " ".join(f"{r['fid'].get(d, float('nan')):>20.2f}" for d in domains)
            print(f"{r['name']:<14} {r['arch']:<9} {r['size']:<8} {r['steps'] or 0:>6} {(r['wall_s'] or 0):>5.0f}s  {fids}")
            print(f"  data {r['data']}" + (f", seed {r['seed']}: {r['command']}" if verbose else ""))
        print(f"FID: {features} features, samples vs each domain's held-out images (lower is closer); use as zoo:NAME")
    return 0
