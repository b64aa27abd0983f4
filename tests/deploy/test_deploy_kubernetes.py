"""The Kubernetes manifests (deploy/kubernetes, decision 14), checked offline without a cluster or
kubectl: a small Kustomize renderer (only the fields the base and the overlay use), every rendered
object validated against the Kubernetes 1.30 schemas bundled with ``kubernetes-validate``
(strict: unknown fields are errors), the ServiceMonitor (a CRD, no bundled schema) by hand, and
the security settings the broker must run with.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
DOCKERFILE = ROOT / "Dockerfile"
K8S_VERSION = "1.30.0"

#: The kustomization fields the renderer understands; any other is refused, so that the tests
#: never pass on a kustomization they did not really render.
KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas"}
#: Cluster-wide kinds: ``namespace:`` leaves them alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass"}


# -- a minimal offline kustomize -------------------------------------------------------------------

def _load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build directory`` would print, for the subset of Kustomize used here."""
    kfile = directory / "kustomization.yaml"
    (kust,) = _load_yaml(kfile)
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    unknown = set(kust) - KNOWN_FIELDS
    assert not unknown, f"{kfile}: the test renderer does not implement {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for entry in kust.get("resources", []):
        path = (directory / entry).resolve()
        assert path.is_relative_to(KUBE), f"{kfile}: {entry} is outside deploy/kubernetes"
        objects.extend(render(path) if path.is_dir() else _load_yaml(path))
    objects = copy.deepcopy(objects)
    if "namespace" in kust:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kust["namespace"]
    for image in kust.get("images", []):
        matched = 0
        for container in _containers(objects):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                matched += 1
                new_name = image.get("newName", name)
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new_name}@{image['digest']}" if "digest" in image else f"{new_name}:{new_tag}"
        assert matched, f"{kfile}: images: {image['name']} matches no container"
    for rep in kust.get("replicas", []):
        targets = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                   and o["metadata"]["name"] == rep["name"]]
        assert targets, f"{kfile}: replicas: no workload named {rep['name']}"
        for obj in targets:
            obj["spec"]["replicas"] = rep["count"]
    keys = [(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"{kfile}: an object is defined twice"
    return objects


def _split_image(ref: str) -> tuple[str, str | None]:
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return name, tag


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        out.extend(spec.get("initContainers", []) + spec.get("containers", []))
    return out


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(OVERLAY)


def dockerfile_user() -> int:
    (user,) = re.findall(r"^USER\s+(\d+)(?::\d+)?\s*$", DOCKERFILE.read_text(), re.M)
    return int(user)


# -- the renderer itself ---------------------------------------------------------------------------

def test_renderer_refuses_fields_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\npatches: []\n")
    with pytest.raises(AssertionError, match="patches"):
        render(tmp_path)


def test_base_renders_every_kind(base):
    kinds = sorted(o["kind"] for o in base)
    assert kinds == sorted(["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "ServiceMonitor"])


def test_overlay_sets_image_tag_replicas_and_namespace(base, overlay):
    (kust,) = _load_yaml(OVERLAY / "kustomization.yaml")
    deployment = one(overlay, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    image = kust["images"][0]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    assert not container["image"].endswith(":latest")
    assert deployment["spec"]["replicas"] == kust["replicas"][0]["count"]
    assert {o["metadata"]["namespace"] for o in overlay} == {kust["namespace"]}
    # The overlay changes the copies it renders, never the base's.
    assert all("namespace" not in o["metadata"] for o in base)
    # The HPA takes over from `replicas`; the overlay should not start below its floor.
    assert deployment["spec"]["replicas"] >= one(overlay, "HorizontalPodAutoscaler")["spec"]["minReplicas"]


# -- the Kubernetes schemas ------------------------------------------------------------------------

def schema_checked(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if not o["apiVersion"].startswith("monitoring.coreos.com/")]


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_manifest_is_valid_for_kubernetes_1_30(which, base, overlay):
    objects = base if which == "base" else overlay
    checked = schema_checked(objects)
    assert len(checked) == len(objects) - 1   # only the ServiceMonitor is left to the next test
    for obj in checked:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_example_secrets_are_valid_and_only_placeholders():
    docs = _load_yaml(BASE / "secrets.example.yaml")
    assert {d["metadata"]["name"] for d in docs} == {
        "digione-broker-master", "digione-broker-keys", "digione-broker-database"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert "data" not in doc, "example Secrets use stringData with readable placeholders"
        for key, value in doc["stringData"].items():
            assert value.startswith("REPLACE-ME-PLACEHOLDER"), f"{doc['metadata']['name']}.{key} is not a placeholder"
            assert "BEGIN" not in value


def test_validation_really_rejects_a_bad_manifest(base):
    bad = copy.deepcopy(one(base, "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True   # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_service_monitor_shape(base):
    monitor = one(base, "ServiceMonitor")
    service = one(base, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "the ServiceMonitor selects the Service"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    assert int(endpoint["scrapeTimeout"][:-1]) <= int(endpoint["interval"][:-1])
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["metrics"]["targetPort"] == "metrics"
    container_ports = {p["name"] for p in one(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert container_ports == {"http", "metrics"}


# -- how the broker runs ---------------------------------------------------------------------------

def broker_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_security_context(base):
    uid = dockerfile_user()
    pod = one(base, "Deployment")["spec"]["template"]["spec"]
    sc = broker_container(base)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == sc["runAsUser"] == uid == 10001
    assert pod["securityContext"]["seccompProfile"] == sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    # With a read-only root, /tmp is an emptyDir (uWSGI's request-body files).
    volumes = {v["name"]: v for v in pod["volumes"]}
    (tmp,) = [m for m in broker_container(base)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_probes_serve_command_and_ports(base):
    container = broker_container(base)
    config = one(base, "ConfigMap")["data"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container.get("command") is None, "the image's ENTRYPOINT (broker) is kept"
    assert container["args"] == ["serve"]
    http = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert str(http) == config["BROKER_PORT"]
    assert re.search(rf"^EXPOSE\s+(\d+\s+)*{http}(\s+\d+)*\s*$", DOCKERFILE.read_text(), re.M)
    service = one(base, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}["http"] == "http"
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_resources_and_topology_spread(base):
    deployment = one(base, "Deployment")
    resources = broker_container(base)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_hpa_and_pdb_target_the_deployment(base):
    deployment = one(base, "Deployment")
    hpa = one(base, "HorizontalPodAutoscaler")
    pdb = one(base, "PodDisruptionBudget")
    assert hpa["apiVersion"] == "autoscaling/v2" and pdb["apiVersion"] == "policy/v1"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # The PDB never blocks every drain: fewer may be unavailable than the HPA's floor.
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_settings_and_secrets_are_wired(base):
    container = broker_container(base)
    config = one(base, "ConfigMap")
    env = {e["name"]: e for e in container.get("env", [])}
    from_config = {k for k in config["data"] if k.startswith("BROKER_")}
    assert {"BROKER_BASE_URL", "BROKER_REDIS_URL", "BROKER_WORKERS", "BROKER_PORT", "BROKER_SECRET_FILE",
            "BROKER_KEYS_DIR", "BROKER_CONFIG_DIR"} <= from_config
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    # The database URL holds a password: a Secret, never the ConfigMap.
    assert "BROKER_DATABASE_URL" not in config["data"]
    assert env["BROKER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "digione-broker-database", "key": "url"}
    assert "BROKER_SECRET" not in env and "BROKER_SECRET" not in config["data"]
    yaml.safe_load(config["data"]["broker.yaml"])   # parses
    # The secret file and the keys folder are the Secrets' mounts, read-only.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in one(base, "Deployment")["spec"]["template"]["spec"]["volumes"]}

    def secret_at(path: str) -> str:
        for mount_path, mount in mounts.items():
            if path == mount_path or path.startswith(mount_path + "/"):
                assert mount["readOnly"] is True
                return volumes[mount["name"]]["secret"]["secretName"]
        raise AssertionError(f"nothing is mounted at {path}")

    assert secret_at(config["data"]["BROKER_SECRET_FILE"]) == "digione-broker-master"
    assert secret_at(config["data"]["BROKER_KEYS_DIR"]) == "digione-broker-keys"
    assert Path(config["data"]["BROKER_CONFIG_DIR"]) == Path(mounts[config["data"]["BROKER_CONFIG_DIR"]]["mountPath"])


SECRETISH = re.compile(r"-----BEGIN|password|passwd|secret|token|key", re.I)
URL_WITH_CREDENTIALS = re.compile(r"[a-z+]+://[^/\s:@]+:[^/\s@]+@", re.I)


def test_no_secret_values_in_the_base(base):
    assert not [o for o in base if o["kind"] == "Secret"], "the base ships no Secret (only secrets.example.yaml)"
    for obj in base:
        for key, value in _leaves(obj):
            if not isinstance(value, str):
                continue
            assert not URL_WITH_CREDENTIALS.search(value), f"{obj['kind']}: {key} holds a URL with credentials"
            assert "-----BEGIN" not in value, f"{obj['kind']}: {key} holds PEM material"
    data = one(base, "ConfigMap")["data"]
    for key, value in data.items():
        if SECRETISH.search(key):
            assert value.startswith("/"), f"ConfigMap {key} must be a path to a mounted file, not a value"
    for path in BASE.glob("*.yaml"):
        if path.name != "secrets.example.yaml":
            assert "stringData" not in path.read_text() and "kind: Secret" not in path.read_text(), path


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}.{k}")]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{prefix}[{i}]")]
    return [(prefix, node)]


def test_the_broker_accepts_the_pods_settings(base, tmp_path):
    """The Deployment's environment, with every mount replaced by a folder of tmp_path, read by the
    broker's own settings loader: the ConfigMap's broker.yaml, the master secret file and the
    keys folder (already holding the keys, as the Secret does: nothing is generated or written).
    """
    from broker.pki import ensure_keypair
    from broker.settings import Settings

    deployment = one(base, "Deployment")
    container = broker_container(base)
    config = one(base, "ConfigMap")["data"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounted = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}

    def local(path: str) -> Path:
        for mount_path, folder in mounted.items():
            if path == mount_path or path.startswith(mount_path + "/"):
                return folder / Path(path).relative_to(mount_path)
        raise AssertionError(f"nothing is mounted at {path}")

    for folder in mounted.values():
        folder.mkdir()
    for item in volumes["config"]["configMap"]["items"]:
        (mounted["/etc/digione/config"] / item["path"]).write_text(config[item["key"]])
    local(config["BROKER_SECRET_FILE"]).write_text("placeholder-master-secret-for-this-test-only-0123456789")
    keys = local(config["BROKER_KEYS_DIR"])
    for name in ("saml-sp", "saml-idp"):
        ensure_keypair(keys, name)
    before = {p.name: p.stat().st_mtime_ns for p in keys.iterdir()}

    env = {k: local(v) if k in ("BROKER_CONFIG_DIR", "BROKER_SECRET_FILE", "BROKER_KEYS_DIR") else v
           for k, v in config.items() if k.startswith("BROKER_")}
    env = {k: str(v) for k, v in env.items()}
    env["BROKER_DATABASE_URL"] = "postgresql://placeholder@db.invalid/broker"
    settings = Settings.from_env(env)
    assert settings.port == int(config["BROKER_PORT"]) and settings.workers == int(config["BROKER_WORKERS"])
    assert settings.base_url == config["BROKER_BASE_URL"] and settings.redis_url == config["BROKER_REDIS_URL"]
    assert settings.config_dir == mounted["/etc/digione/config"] and settings.keys_dir == keys
    assert settings.master_secret == b"placeholder-master-secret-for-this-test-only-0123456789"
    for name in ("saml-sp", "saml-idp"):
        ensure_keypair(keys, name)
    assert {p.name: p.stat().st_mtime_ns for p in keys.iterdir()} == before, "the keys Secret is read-only"
