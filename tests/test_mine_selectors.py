"""``ganlode mine`` selectors and routing end to end: RUN/shares.json, what sampling uses, the Ray
path against the in-process reference for routing and row sampling, a killed actor in a routed run,
and bad input (an unknown selector, --route without an assigning selector, gray and colour mixed)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from ganlode.methods.multisource import MultiSourceConfig, MultiSourceMiner
from ganlode.methods.nets import GANConfig, build_gan
from ganlode.orchestrator.cli.main import main

TARGET = "mnist5k:3@12+animals:zebra@12"


@pytest.fixture(scope="module")
def sources(tmp_path_factory, provenanced_source):
    """Tiny untrained sources with real provenance: digits 0-4, animals 5-9, and a colour one."""
    root = tmp_path_factory.mktemp("sources")
    return {name: provenanced_source(root / name, spec, i, channels=channels)
            for i, (name, spec, channels) in enumerate([("digits", "mnist5k:0-4", 1), ("animals", "animals:5-9", 1),
                                                       ("colour", "mnist5k:0-4", 3)])}


def mine_args(sources, out, *extra):
    return ["mine", "--source", sources["digits"], "--source", sources["animals"], "--target", TARGET,
            "--mining-steps", "4", "--finetune-steps", "2", "--batch", "8", "--out", str(out),
            "--threads", "1", "--no-progress", "--eval-n", "40", "--min-share", "0", *extra]


def final(run):
    config = json.loads(open(os.path.join(run, "checkpoints", "final", "config.json")).read())
    return config, load_file(os.path.join(run, "checkpoints", "final", "model.safetensors"))


@pytest.mark.parametrize("selector", ["coverage", "count", "mixture-fit"])
def test_shares_json_holds_every_selector_and_sampling_uses_the_chosen_one(sources, tmp_path, capsys, selector):
    run = tmp_path / "run"
    assert main(mine_args(sources, run, "--in-process", "--selector", selector)) == 0
    doc = json.loads((run / "shares.json").read_text())
    names = [sources["digits"], sources["animals"]]
    assert doc["sources"] == names and doc["selector"] == selector and set(doc["by_selector"]) == {"count", "coverage", "mixture-fit"}
    assert doc["shares"] == doc["by_selector"][selector]
    for shares in doc["by_selector"].values():
        assert set(shares) == set(names) and min(shares.values()) >= 0 and sum(shares.values()) == pytest.approx(1, abs=1e-5)
    config, tensors = final(run)
    assert tensors["shares"].tolist() == pytest.approx([doc["shares"][n] for n in names], abs=1e-6)
    assert json.loads((run / "config.json").read_text())["shares"] == pytest.approx(tensors["shares"].tolist())
    assert doc["true_shares"] == {names[0]: 0.5, names[1]: 0.5}
    assert doc["max_error"][selector] == pytest.approx(max(abs(doc["shares"][n] - 0.5) for n in names), abs=1e-5)
    assert f"{selector} shares" in capsys.readouterr().out


def test_route_mines_only_the_kept_sources_each_on_its_part(sources, tmp_path):
    from ganlode.orchestrator.pipelines.mine import run_mine

    common = dict(in_process=True, threads=1, show_progress=False, eval_n=40, selector="coverage", route=True)
    cfg = MultiSourceConfig(mining_steps=3, finetune_steps=1, batch=8)
    both = run_mine([sources["digits"], sources["animals"]], TARGET, str(tmp_path / "both"), cfg, min_share=0.0, **common)
    assert both.kept == [0, 1]
    config, tensors = final(both.run)
    assert config["mining"]["routed"] and len(config["sources"]) == 2
    assert any(k.startswith("sources.1.miner.") for k in tensors)
    assert both.shares == pytest.approx(both.by_selector["coverage"]) and "count" not in both.by_selector
    # a min-share above the smaller share drops that source: it is never mined, and gets share 0
    drop = min(both.shares) + 1e-3
    one = run_mine([sources["digits"], sources["animals"]], TARGET, str(tmp_path / "one"), cfg, min_share=drop, **common)
    assert len(one.kept) == 1 and sorted(one.shares) == [0.0, 1.0]
    config, tensors = final(one.run)
    assert len(config["sources"]) == 1 and not any(k.startswith("sources.1.") for k in tensors)


@pytest.mark.parametrize("extra", [("--route",), ("--rows", "shares", "--n-critic", "2", "--selector", "mixture-fit")])
def test_mine_on_ray_matches_the_in_process_run(sources, tmp_path, ray_cluster, extra):
    ray_run, local_run = tmp_path / "ray", tmp_path / "local"
    assert main(mine_args(sources, ray_run, "--checkpoint-every", "3", *extra)) == 0
    assert main(mine_args(sources, local_run, "--in-process", "--checkpoint-every", "3", *extra)) == 0
    (_, a), (_, b) = final(ray_run), final(local_run)
    assert a.keys() == b.keys()
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()) <= 1e-6
    ja, jb = json.loads((ray_run / "shares.json").read_text()), json.loads((local_run / "shares.json").read_text())
    assert ja["by_selector"].keys() == jb["by_selector"].keys()
    for name, shares in ja["by_selector"].items():
        assert shares == pytest.approx(jb["by_selector"][name], abs=1e-6)


def _routed_problem():
    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    gens, critics = [], []
    for i in range(2):
        torch.manual_seed(300 + i)
        g, d = build_gan(arch)
        gens.append(g.state_dict())
        critics.append(d.state_dict())
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cfg = MultiSourceConfig(mining_steps=10, finetune_steps=2, batch=8, routed=True, row_shares=(0.3, 0.7), seed=4)
    return [arch, arch], gens, critics, [images[:12], images[12:]], cfg


def test_a_killed_generator_actor_in_a_routed_run_is_restarted_and_the_run_matches(ray_cluster):
    from ganlode.actors.cluster import MiningCluster
    from ganlode.actors.placement import plan_resources

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = MultiSourceMiner.build(*_routed_problem())
        rows = reference.run_until(12)
        want = reference.state_tensors()
    finally:
        torch.set_num_threads(before)
    with MiningCluster(*_routed_problem(), plan_resources(2, threads=1), snapshot_every=4, step_timeout_s=60,
                       restart_timeout_s=60) as cluster:
        first = cluster.run_until(6)
        ray_cluster.kill(cluster.generators[0], no_restart=False)
        got = first + cluster.run_until(12)
        assert cluster.coordinator_info()["recoveries"] >= 1
        state = cluster.state_tensors()
    assert [r["step"] for r in got] == [r["step"] for r in rows]
    for a, b in zip(got, rows):
        assert a["d_loss"] == pytest.approx(b["d_loss"], abs=1e-5) and a["g_loss"] == pytest.approx(b["g_loss"], abs=1e-5)
    keys = [k for k in want if ".miner." in k or k.startswith("route.")]
    assert max(float((state[k].double() - want[k].double()).abs().max()) for k in keys if want[k].numel()) <= 1e-6


@pytest.mark.parametrize("case", ["unknown selector", "route without coverage", "gray and colour"])
def test_bad_input_exits_2_with_one_line(sources, tmp_path, capsys, case):
    args = mine_args(sources, tmp_path / "bad", "--in-process")
    if case == "unknown selector":
        args += ["--selector", "vote"]
    elif case == "route without coverage":
        args += ["--route", "--selector", "count"]
    else:
        args[args.index(sources["animals"])] = sources["colour"]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err, err
    assert {"unknown selector": "'vote' is not one of", "route without coverage": "--selector coverage",
            "gray and colour": "gray and colour"}[case] in err
    assert not (tmp_path / "bad").exists()
