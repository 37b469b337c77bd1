"""Multi-source mining on Ray: the distributed path equals the in-process reference, each generator
actor gets its own GPU, and a killed generator actor is restarted without changing the result.
Inside a caller's placement group (a Tune trial's), the caller's CPUs are split exactly between it
and the actors, and a group whose bundles cannot hold the actors is refused at once (never a hang).

One set of actors serves the module (the shared cluster has 2 CPUs: two sets cannot coexist).
"""

from __future__ import annotations

import pytest
import torch

from ganlode.methods.multisource import MultiSourceConfig, MultiSourceMiner
from ganlode.methods.nets import GANConfig, build_gan

ARCH = GANConfig(latent_dim=8, g_width=8, d_width=8)
CFG = MultiSourceConfig(mining_steps=20, finetune_steps=4, batch=8, loss="wgan-gp", seed=11)
SNAPSHOT_EVERY = 5
TOL = 1e-5


def _problem():
    gens, critic = [], None
    for i in range(2):
        torch.manual_seed(200 + i)
        g, d = build_gan(ARCH)
        gens.append(g.state_dict())
        critic = critic or d.state_dict()
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return [ARCH, ARCH], gens, critic, images


@pytest.fixture(scope="module")
def reference():
    """The in-process reference, one thread: its history rows and final state."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = MultiSourceMiner.build(*_problem(), CFG)
        mined = ref.run_until(CFG.mining_steps)
        state20 = ref.state_tensors()
        rows = mined + ref.run_until(CFG.total_steps)
        return rows, state20, ref.state_tensors()
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    from ganlode.actors.cluster import MiningCluster
    from ganlode.actors.placement import plan_resources

    resources = plan_resources(2, gpus_per_source=1, threads=1)
    assert resources.cpus_per_source < 1  # fractions: whole CPUs would not fit 3 actors on 2 CPUs
    with MiningCluster(*_problem(), CFG, resources, snapshot_every=SNAPSHOT_EVERY, step_timeout_s=60,
                       restart_timeout_s=60) as cl:
        cl.initial_state = cl.state_tensors()  # step 0, before any test moves it
        yield cl


def _assert_rows_match(rows, expected):
    assert [r["step"] for r in rows] == [r["step"] for r in expected]
    for got, want in zip(rows, expected):
        for key in ("d_loss", "penalty", "g_loss"):
            assert got[key] == pytest.approx(want[key], abs=TOL), (got["step"], key)
        assert got["shares"] == pytest.approx(want["shares"], abs=TOL), got["step"]


def _miner_diff(a: dict, b: dict) -> float:
    keys = [k for k in b if ".miner." in k]
    assert keys and set(keys) <= set(a)
    return max(float((a[k] - b[k]).abs().max()) for k in keys)


def test_each_generator_actor_runs_on_its_own_gpu(cluster):
    infos = cluster.generator_info()
    ids = [info["gpu_ids"] for info in infos]
    assert all(len(i) == 1 for i in ids), ids
    assert len({i[0] for i in ids}) == 2, ids  # two actors, two different GPUs
    assert [info["cuda_visible_devices"] for info in infos] == [i[0] for i in ids]
    # the torch device follows torch.cuda.is_available(), not Ray's logical ids
    assert all(info["device"] == ("cuda" if torch.cuda.is_available() else "cpu") for info in infos)
    assert all(info["threads"] == 1 for info in infos)


def test_distributed_mining_equals_the_in_process_reference(cluster, reference):
    rows, state20, final = reference
    cluster.load_state_tensors(cluster.initial_state)
    got = cluster.run_until(CFG.mining_steps)
    _assert_rows_match(got, rows[:CFG.mining_steps])
    assert _miner_diff(cluster.state_tensors(), state20) <= 1e-6
    # and through the fine-tuning stage, where G_i moves too
    _assert_rows_match(cluster.run_until(CFG.total_steps), rows[CFG.mining_steps:])
    state = cluster.state_tensors()
    assert max(float((state[k].double() - final[k].double()).abs().max()) for k in final if final[k].numel()) <= 1e-6


def test_a_killed_generator_actor_is_restarted_and_the_run_matches(cluster, reference, ray_cluster):
    ray = ray_cluster
    rows, _, final = reference
    cluster.load_state_tensors(cluster.initial_state)
    before = cluster.generator_info()
    first = cluster.run_until(8)  # snapshots at steps 0 and 5
    victim = cluster.generators[1]
    ray.kill(victim, no_restart=False)
    rest = cluster.run_until(CFG.total_steps)
    info = cluster.generator_info()
    assert info[1]["pid"] != before[1]["pid"]  # a new process...
    assert info[1]["loaded_from"]  # ...whose __init__ reloaded the last saved state
    assert cluster.coordinator_info()["recoveries"] >= 1
    # the replay from the step-5 snapshot gives the uninterrupted run's numbers
    _assert_rows_match(first + rest, rows)
    assert _miner_diff(cluster.state_tensors(), final) <= 1e-6
    assert cluster.shares() == pytest.approx(rows[-1]["shares"], abs=TOL)


def test_a_step_costs_one_call_per_actor(cluster):
    """Step t's gradient and step t+1's sample go in one call; the last gradient of a run goes alone."""
    cluster.load_state_tensors(cluster.initial_state)
    before = [info["calls"] for info in cluster.generator_info()]
    cluster.run_until(SNAPSHOT_EVERY - 1)  # no snapshot on the way
    after = [info["calls"] for info in cluster.generator_info()]
    for a, b in zip(before, after):
        made = {k: b.get(k, 0) - a.get(k, 0) for k in b}
        assert made == {"sample": 1, "apply_and_sample": SNAPSHOT_EVERY - 2, "apply_gradient": 1}, made
    info = cluster.coordinator_info()
    assert info["selector_s"] > 0 and info["wait_s"] > 0


def test_a_gradient_reaches_only_the_process_that_sampled_its_step(torch_one_thread):
    """A restarted actor holds no graph: a gradient it did not sample is refused with its step count."""
    from ganlode.actors.generator import GeneratorActor

    arches, gens, _, _ = _problem()
    actor = GeneratorActor(0, arches[0].to_dict(), gens[0], CFG.to_dict())
    u = torch.randn(CFG.batch, CFG.miner_input_dim)
    grad = torch.ones(CFG.batch, 1, 28, 28)
    assert actor.apply_gradient(grad, 1) == 0
    done, x = actor.apply_and_sample(grad, u, 2)
    assert (done, x.numel()) == (0, 0)
    assert not actor.dirty
    done, x1 = actor.sample(u, 1)
    assert done == 0 and x1.shape == grad.shape
    done, x2 = actor.apply_and_sample(grad, u, 2)
    assert done == 1 and not torch.equal(x1, x2)  # the miner moved
    assert actor.apply_gradient(grad, 1) == 1  # step 1 is applied already: nothing happens
    assert actor.apply_gradient(grad, 2) == 2


# ---------------------------------------------------------------- a mining run inside a caller's placement group (no Ray)


@pytest.mark.parametrize("n, cpus", [(2, 1.0), (3, 1.0), (4, 1.0), (2, 2.0), (5, 8.0), (2, 0.2)])
def test_nested_plan_splits_the_callers_cpus_exactly(n, cpus):
    """A Tune trial's bundles (its own, then N generators and a coordinator) add up to --cpus-per-trial."""
    from ganlode.actors.placement import plan_nested_resources

    own, resources = plan_nested_resources(n, cpus, gpus_per_source=1.0)
    bundles = [{"CPU": own}] + resources.bundles(n)
    assert sum(b["CPU"] for b in bundles) == pytest.approx(cpus)
    assert own > 0 and resources.cpus_per_source >= 0.05 and resources.cpus_per_source == resources.coordinator_cpus
    assert [b.get("GPU", 0) for b in bundles] == [0] + [1.0] * n + [0]  # GPUs go to the generators only
    assert resources.threads_per_source == max(1, int(resources.cpus_per_source))
    if (n, cpus) == (2, 1.0):
        assert bundles == [{"CPU": 0.25}, {"CPU": 0.25, "GPU": 1.0}, {"CPU": 0.25, "GPU": 1.0}, {"CPU": 0.25}]


def test_nested_plan_refuses_a_budget_too_small_to_split():
    from ganlode.actors.placement import plan_nested_resources

    with pytest.raises(ValueError, match="too few"):
        plan_nested_resources(4, 0.2)


def test_resources_read_back_from_their_bundles():
    from ganlode.actors.placement import MiningResources, plan_nested_resources

    _, resources = plan_nested_resources(3, 1.0, gpus_per_source=0.5)
    assert MiningResources.from_bundles(resources.bundles(3)) == resources
    with pytest.raises(ValueError, match="differ"):
        MiningResources.from_bundles([{"CPU": 0.25}, {"CPU": 0.5}, {"CPU": 0.25}])


def test_a_caller_group_too_small_for_the_actors_is_refused_before_any_actor_starts():
    """An actor asking a bundle for more than it holds would wait for ever: refuse at once, saying why."""
    from ganlode.actors.cluster import MiningCluster
    from ganlode.actors.placement import plan_nested_resources

    _, resources = plan_nested_resources(2, 1.0, gpus_per_source=1.0)

    class Group:  # stands in for a Tune trial's group: only its bundles are read before the check
        bundle_specs = [{"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}]  # no GPUs

    with pytest.raises(ValueError, match=r"bundles 1\.\.3 must hold"):
        MiningCluster(*_problem(), CFG, resources, placement_group=Group(), bundle_offset=1)
    Group.bundle_specs = Group.bundle_specs[:3]  # one bundle short
    with pytest.raises(ValueError, match="must hold"):
        MiningCluster(*_problem(), CFG, resources.__class__(0.25, 0.0, 0.25), placement_group=Group(), bundle_offset=1)
