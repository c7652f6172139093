"""Every manifest in k8s/: schema-valid for Kubernetes 1.30 (strict), renders with kustomize, and
carries the properties operators rely on (non-root, read-only root, least-privilege RBAC, GPU
placement, probes). Custom resources have no schema in kubernetes-validate: their content is
checked here (PrometheusRule groups with promtool, ServiceMonitor against the Service)."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.tools import K8S, KUBERNETES_VERSION, ensure_deb, ensure_pip, kustomize, load_documents

ensure_pip("kubernetes_validate")
import kubernetes_validate  # noqa: E402

NOT_MANIFESTS = {"kustomization.yaml", "models.yaml", "prometheus.yml", "rules.yml"}
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name not in NOT_MANIFESTS)


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def multiworker() -> list[dict]:
    return kustomize(K8S / "multiworker")


def validate(doc: dict) -> bool:
    """True if validated strictly, False if it is a known custom resource without a schema."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return True
    except kubernetes_validate.SchemaNotFoundError:
        assert (doc["apiVersion"], doc["kind"]) in CUSTOM, f"no schema for {doc['kind']}"
        return False


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_valid_for_1_30_strict(path: Path) -> None:
    docs = load_documents(path)
    assert docs
    for doc in docs:
        validate(doc)


def test_rendered_kustomizations_are_valid(rendered: list[dict], multiworker: list[dict]) -> None:
    skipped = [(d["kind"]) for d in rendered + multiworker if not validate(d)]
    assert sorted(skipped) == ["PrometheusRule", "ServiceMonitor"]
    kinds = {d["kind"] for d in rendered}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment",
            "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap",
            "CronJob", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert all(d["metadata"].get("namespace") == "transfer-serving" for d in rendered if d["kind"] != "Namespace")
    assert {d["kind"] for d in multiworker} == {"Service", "Job", "NetworkPolicy"}


def test_strict_validation_rejects_a_misspelled_field(rendered: list[dict]) -> None:
    """The validator is not a formality: a typo a lax apply would drop is an error here."""
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_prometheus_rule_groups_pass_promtool(rendered: list[dict], tmp_path: Path) -> None:
    promtool = ensure_deb("promtool", "prometheus")
    rules = by_kind(rendered, "PrometheusRule")
    assert rules
    for index, rule in enumerate(rules):
        path = tmp_path / f"rules-{index}.yml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_the_serving_service(rendered: list[dict]) -> None:
    monitor = by_kind(rendered, "ServiceMonitor")[0]
    service = next(s for s in by_kind(rendered, "Service") if s["metadata"]["name"] == "transfer-serving")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    specs = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def test_every_pod_runs_unprivileged_with_a_read_only_root(rendered: list[dict], multiworker: list[dict]) -> None:
    template = load_documents(K8S / "trainer" / "job-template.yaml")
    specs = pod_specs(rendered + multiworker + template)
    assert len(specs) == 4
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"], name
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"]), name


def test_serving_deployment(rendered: list[dict]) -> None:
    deployment = by_kind(rendered, "Deployment")[0]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    models = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert models["readOnly"] is True and models["mountPath"] == "/models"
    claim = next(v for v in spec["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    pvc = next(p for p in by_kind(rendered, "PersistentVolumeClaim") if p["metadata"]["name"] == claim["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    config_maps = {c["metadata"]["name"] for c in by_kind(rendered, "ConfigMap")}
    for volume in spec["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps   # kustomize hashed names line up
    assert spec["serviceAccountName"] == "transfer-serving"
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")[0]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_rbac_allows_exactly_jobs_and_pod_listing_in_the_namespace(rendered: list[dict]) -> None:
    (role,) = by_kind(rendered, "Role")
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "delete"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    (binding,) = by_kind(rendered, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "transfer-serving", "namespace": "transfer-serving"}]
    assert not [d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_trainer_pods_request_a_gpu_on_gpu_nodes(rendered: list[dict], multiworker: list[dict]) -> None:
    template = load_documents(K8S / "trainer" / "job-template.yaml")
    specs = pod_specs(template + by_kind(rendered, "CronJob") + by_kind(multiworker, "Job"))
    assert len(specs) == 3
    for name, spec in specs.items():
        resources = spec["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1, name
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"], name
        assert spec["automountServiceAccountToken"] is False, name


def test_multiworker_job_is_indexed_behind_a_headless_service(multiworker: list[dict]) -> None:
    (job,) = by_kind(multiworker, "Job")
    (service,) = by_kind(multiworker, "Service")
    assert job["spec"]["completionMode"] == "Indexed"
    assert service["spec"]["clusterIP"] == "None"
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    hosts = env["TRAINER_WORKER_HOSTS"].split(",")
    name, svc = job["metadata"]["name"], service["metadata"]["name"]
    assert hosts == [f"{name}-{i}.{svc}:12345" for i in range(job["spec"]["completions"])]


def test_deployment_args_and_model_config_parse_with_the_real_server_flags(rendered: list[dict],
                                                                           tmp_path: Path) -> None:
    """The container args are flags the server really has, and the ConfigMap is a valid model config."""
    from serving.config import parse_args

    config_map = next(c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"].startswith("serving-models"))
    config_file = tmp_path / "models.yaml"
    config_file.write_text(config_map["data"]["models.yaml"])
    container = by_kind(rendered, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("/etc/serving/models.yaml", str(config_file)).replace("$(POD_NAMESPACE)", "transfer-serving")
            for a in container["args"]]
    options = parse_args(args, environ={})
    assert [m.name for m in options.models] == ["fashion"]
    assert str(options.models[0].base_path) == "/models/fashion"
    assert options.extra["retrain_backend"] == "kubernetes" and options.extra["k8s_namespace"] == "transfer-serving"
    assert options.extra["trainer_job_template"] == "/etc/retrain/job-template.yaml"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/retrain", "/var/run/secrets/retrain", "/etc/serving"} <= mounts
