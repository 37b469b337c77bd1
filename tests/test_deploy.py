"""deploy/ holds what a GPU cluster needs; these checks keep it consistent with the code.

Every YAML parses; the KubeRay manifests are ray.io/v1 with token auth, a memory-backed
/dev/shm, GPU limits on the GPU workers and clusters that go away after their RayJob; the
cluster-launcher config passes Ray's own validation; and every Ray version or image tag in
deploy/ equals the Ray version pinned in pyproject.toml.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.fullmatch(r"ray(?:\[[^\]]*\])?==([\d.]+)", d.replace(" ", "")))]
    assert len(pins) == 1, f"pyproject.toml should pin ray exactly once: {deps}"
    return pins[0]


def _load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def test_every_yaml_parses_and_the_expected_files_exist():
    names = {p.name for p in DEPLOY.iterdir()}
    assert {"Dockerfile", "README.md", "runtime_env.yaml", "cluster.yaml", "raycluster.yaml",
            "rayjob-mine.yaml", "rayjob-tune.yaml"} <= names
    for path in DEPLOY.rglob("*.y*ml"):
        assert _load(path.relative_to(DEPLOY).as_posix()), f"{path} is empty"


def test_every_ray_version_in_deploy_equals_the_pyproject_pin():
    pin = _ray_pin()
    patterns = {
        "base image": r"rayproject/ray(?:-ml)?:(\d+\.\d+\.\d+)",
        "ganlode image tag": r"ganlode:[\w.]*?-ray(\d+\.\d+\.\d+)",
        "rayVersion": r"rayVersion:\s*[\"']?(\d+\.\d+\.\d+)",
        "pip pin": r"\bray(?:\[[^\]]*\])?==(\d+\.\d+\.\d+)",
        "version assert": r"ray\.__version__ == '(\d+\.\d+\.\d+)'",
    }
    found: dict[str, set[str]] = {k: set() for k in patterns}
    # constraints.txt is what the Dockerfile installs with
    for path in [*DEPLOY.rglob("*"), ROOT / "constraints.txt"]:
        if path.is_file():
            text = path.read_text()
            for kind, pattern in patterns.items():
                found[kind] |= set(re.findall(pattern, text))
    for kind, versions in found.items():
        assert versions, f"no {kind} found in deploy/"
        assert versions == {pin}, f"{kind} in deploy/ says {sorted(versions)}, pyproject.toml pins ray=={pin}"
    from_lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")]
    assert from_lines == [f"FROM rayproject/ray:{pin}-py311-gpu"]


def _apt_packages(text: str) -> set[str]:
    return {w for m in re.findall(r"apt-get install ([^&\n]+)", text) for w in m.split() if not w.startswith("-")}


def test_the_image_installs_the_apt_packages_of_the_set_up():
    """The emoji font and list (``emoji:`` specs) are apt packages: the image has what .ci/run and the README install."""
    setup = _apt_packages((ROOT / ".ci" / "run").read_text())
    assert setup >= {"fonts-noto-color-emoji", "unicode-data"}, setup
    assert setup <= _apt_packages((DEPLOY / "Dockerfile").read_text().replace("\\\n", " "))
    assert setup <= _apt_packages((ROOT / "README.md").read_text())


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _check_shm(group: dict) -> None:
    spec = group["template"]["spec"]
    memory_volumes = {v["name"] for v in spec.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"}
    for c in _containers(group):
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/dev/shm") in memory_volumes, f"{c['name']}: /dev/shm is not a memory-backed emptyDir"


def _check_cluster_spec(spec: dict) -> None:
    pin = _ray_pin()
    assert spec["rayVersion"] == pin
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    workers = spec["workerGroupSpecs"]
    assert workers, "no worker groups"
    images = {c["image"] for g in [head, *workers] for c in _containers(g)}
    assert len(images) == 1 and f"ray{pin}" in images.pop(), "head and workers must run one image of the pinned Ray"
    _check_shm(head)
    assert not any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in _containers(head))
    gpu_groups = [g for g in workers if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                                            for c in _containers(g))]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for g in workers:
        _check_shm(g)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for g in gpu_groups:
        for c in _containers(g):
            limits = c["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1
            requests = c["resources"].get("requests", {})
            assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]


def test_raycluster_manifest():
    (doc,) = _load("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    _check_cluster_spec(doc["spec"])


@pytest.mark.parametrize("name, command", [("rayjob-mine.yaml", "mine"), ("rayjob-tune.yaml", "tune")])
def test_rayjob_manifests(name, command):
    (doc,) = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["entrypoint"].split()[:2] == ["ganlode", command]
    assert "--out" in spec["entrypoint"].split()
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
    _check_cluster_spec(spec["rayClusterSpec"])


def test_cluster_launcher_config_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    (config,) = _load("cluster.yaml")
    validate_config(prepare_config(config))  # Ray's own schema, defaults filled in
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    head = types[config["head_node_type"]]
    assert not re.match(r"(g\d|p\d)", head["node_config"]["InstanceType"]), "the head should be a CPU node"
    gpu = [t for t in types.values() if re.match(r"(g\d|p\d)", t["node_config"]["InstanceType"])]
    assert gpu and all(t["max_workers"] >= 1 for t in gpu), "no GPU worker type"
    start = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in start and "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any(o.startswith("--shm-size") for o in config["docker"]["run_options"])


def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    (env,) = _load("runtime_env.yaml")
    RuntimeEnv(**env)  # raises on unknown fields or wrong types


def test_no_credentials_in_deploy():
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
            assert not re.search(r"(?im)^\s*(-\s*name:\s*)?AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S", text), path
            assert not re.search(r"(?im)RAY_AUTH_TOKEN\s*[:=]\s*[\"']?[0-9a-f]{16,}", text), path
