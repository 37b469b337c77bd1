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
        rows.append({"name": name, "data": cfg.get("data", {}).get("spec", "?"), "steps": cfg.get("steps"),
                     "wall_s": cfg.get("wall_s"), "fid": zoo.get("fid", {}), "command": cfg.get("command"),
                     "seed": cfg.get("train", {}).get("seed")})
    return rows


@click.command("zoo", cls=Command, epilog=EPILOG, short_help="list the shipped source GANs with their FIDs",
               help="List the shipped source GANs: training data, steps, wall time, and FID (classifier features) "
                    "against every zoo domain's held-out split.")
@click.option("--verbose", "-v", is_flag=True, help="also print each model's command")
@options.json_output()
def command(verbose: bool, as_json: bool) -> int:
    rows = zoo_table()
    if as_json:
        from .output import emit_json

        emit_json({"command": "zoo", "features": "classifier", "split": "eval", "domains": [r["name"] for r in rows],
                   "models": [{**r, "use_as": f"zoo:{r['name']}"} for r in rows]})
        return 0
    if not rows:
        print("the zoo is empty: this installation ships no models")
        return 0
    domains = [r["name"] for r in rows]
    head = f"{'name':<14} {'data':<14} {'steps':>6} {'wall':>6}  " + " ".join(f"{'FID vs ' + d:>20}" for d in domains)
    print(head)
    for r in rows:
        fids = " ".join(f"{r['fid'].get(d, float('nan')):>20.2f}" for d in domains)
        print(f"{r['name']:<14} {r['data']:<14} {r['steps'] or 0:>6} {(r['wall_s'] or 0):>5.0f}s  {fids}")
        if verbose:
            print(f"  seed {r['seed']}: {r['command']}")
    print("FID: classifier features, samples vs each domain's held-out split (lower is closer); use as zoo:NAME")
    return 0
