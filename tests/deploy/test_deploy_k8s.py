"""Kubernetes manifests: `kubectl kustomize` of k8s/base and k8s/overlays/prod, validated.

Built-in kinds are validated strictly (unknown fields rejected) by kubernetes-validate against the
oldest and the newest Kubernetes it bundles that we target. It bundles no CRD schema: the
ScaledObject (KEDA) and PodMonitor (prometheus-operator) objects are validated here against JSON
schemas in crd_schemas/, written from those CRDs for the fields dtm uses, unknown fields rejected
too. (kubernetes-validate's CLI only warns "Couldn't find schema" and passes them; installing the
CRDs' schemas would need the network.)
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from .conftest import missing

K8S_VERSIONS = ("1.29.0", None)  # None: the newest kubernetes-validate bundles
CRD_SCHEMAS = Path(__file__).parent / "crd_schemas"
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "PodMonitor")}
COMPONENTS = ("ingest", "scheduler", "worker")
POD_HELPER_VARIABLES = {"POD_NAME"}


@pytest.fixture(scope="module")
def kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate")
    return kubernetes_validate


def objects(rendered, overlay, kind=None):
    return [doc for doc in rendered[overlay] if kind is None or doc["kind"] == kind]


def one(rendered, overlay, kind, name):
    found = [doc for doc in objects(rendered, overlay, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {overlay}: {len(found)}"
    return found[0]


def configmap(rendered, overlay):
    (settings,) = [doc for doc in objects(rendered, overlay, "ConfigMap") if doc["metadata"]["name"].startswith(
        "dtm-settings")]
    return settings


def pod_templates(rendered, overlay):
    for deployment in objects(rendered, overlay, "Deployment"):
        yield deployment["metadata"]["labels"]["app.kubernetes.io/component"], deployment["spec"]["template"]


@pytest.mark.parametrize("overlay", ["base", "prod"])
@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_builtin_kinds_validate_strictly(rendered, kubernetes_validate, overlay, version):
    version = version or kubernetes_validate.latest_version()
    crds = set()
    for doc in rendered[overlay]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            crds.add((doc["apiVersion"], doc["kind"]))
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {error}")
    assert crds <= CRD_KINDS, f"objects of unknown kinds: {crds - CRD_KINDS}"
    if overlay == "base":
        assert not crds, "the base must apply to a cluster without KEDA or prometheus-operator"


def test_the_validator_is_strict(rendered, kubernetes_validate):
    """A negative control: a misspelled field must fail, or the test above proves nothing."""
    deployment = copy.deepcopy(objects(rendered, "base", "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_crd_objects_match_their_schemas(rendered):
    import jsonschema

    found = set()
    for doc in rendered["prod"]:
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRD_KINDS:
            continue
        found.add(key)
        schema_path = CRD_SCHEMAS / f"{doc['apiVersion'].replace('/', '_')}_{doc['kind']}.json"
        schema = json.loads(schema_path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        messages = [f"{doc['kind']}: {error.message} at {list(error.absolute_path)}" for error in errors]
        assert not errors, "\n".join(messages)
    assert found == CRD_KINDS


def test_crd_schemas_reject_unknown_fields(rendered):
    import jsonschema

    (scaled,) = objects(rendered, "prod", "ScaledObject")
    bad = copy.deepcopy(scaled)
    bad["spec"]["minReplicas"] = 1  # HPA's spelling, not KEDA's
    schema = json.loads((CRD_SCHEMAS / "keda.sh_v1alpha1_ScaledObject.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    bad = copy.deepcopy(scaled)
    bad["spec"]["triggers"][0]["metadata"]["listLength"] = 50  # KEDA metadata values are strings
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_one_deployment_per_component_each_with_an_exporter_sidecar(rendered, overlay):
    settings = configmap(rendered, overlay)["data"]
    metrics_dir = settings["PROMETHEUS_MULTIPROC_DIR"]
    port = int(settings["METRICS_PORT"])
    components = {}
    for component, template in pod_templates(rendered, overlay):
        components[component] = template
        spec = template["spec"]
        containers = {container["name"]: container for container in spec["containers"]}
        assert set(containers) == {component, "exporter"}, component
        main, exporter = containers[component], containers["exporter"]
        assert main["args"][0] == component
        assert exporter["args"] == ["exporter"]
        assert main["image"] == exporter["image"]
        assert exporter["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        for probe in ("livenessProbe", "readinessProbe"):
            assert exporter[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, (component, probe)
            assert probe in main, (component, probe)
        # The pod's processes and the sidecar share one emptyDir at PROMETHEUS_MULTIPROC_DIR.
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = [{m["mountPath"]: m["name"] for m in c["volumeMounts"]}.get(metrics_dir) for c in (main, exporter)]
        assert mounts[0] and mounts[0] == mounts[1], component
        assert "emptyDir" in volumes[mounts[0]]
        assert template["metadata"]["labels"]["app"] == "dtm"
    assert set(components) == set(COMPONENTS)


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_every_container_has_requests_limits_and_probes_and_runs_restricted(rendered, overlay):
    for doc in objects(rendered, overlay):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert "livenessProbe" in container and "readinessProbe" in container, where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            assert context["readOnlyRootFilesystem"] is True, where


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_settings_are_variables_the_code_reads(rendered, overlay, known_settings):
    unknown = set(configmap(rendered, overlay)["data"]) - known_settings
    assert not unknown, f"ConfigMap keys read by no dtm setting: {sorted(unknown)}"
    for component, template in pod_templates(rendered, overlay):
        for container in template["spec"]["containers"]:
            names = {variable["name"] for variable in container.get("env", [])}
            assert not names - known_settings - POD_HELPER_VARIABLES, (component, names - known_settings)


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_secrets_are_referenced_never_stored(rendered, overlay, known_settings):
    assert not objects(rendered, overlay, "Secret"), "Secret values do not belong in the repository"
    for key in configmap(rendered, overlay)["data"]:
        assert not any(word in key for word in ("PASSWORD", "SECRET", "OPAQUE")), f"{key} in a ConfigMap"
    for component, template in pod_templates(rendered, overlay):
        spec = template["spec"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
            for variable in container.get("env", []):
                name = variable["name"]
                if any(word in name for word in ("PASSWORD", "SECRET")):
                    # Secret values only as a file (X_FILE) or a secretKeyRef, never a literal.
                    assert name.endswith("_FILE") or "secretKeyRef" in variable.get("valueFrom", {}), name
                if name.endswith("_FILE"):
                    assert name in known_settings, f"{name}: the code reads no such file variable"
                    directory, _, filename = variable["value"].rpartition("/")
                    mount = mounts.get(directory)
                    assert mount and mount.get("readOnly"), f"{component}: {name} points at no read-only mount"
                    secret = volumes[mount["name"]]["secret"]
                    assert filename in [item["path"] for item in secret["items"]], name


def test_prod_scheduler_reads_sasquatch_with_scram_from_a_secret_file(rendered):
    settings = configmap(rendered, "prod")["data"]
    assert settings["END_READOUT_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["END_READOUT_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert settings["END_READOUT_SCHEMA_REGISTRY"].startswith("http")
    scheduler = one(rendered, "prod", "Deployment", "dtm-scheduler")
    (container,) = [c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "scheduler"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["END_READOUT_SASL_PASSWORD_FILE"]["value"] == "/etc/dtm/kafka/end-readout-sasl-password"
    assert env["END_READOUT_SASL_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "dtm-kafka-credentials"


def test_keda_scales_workers_on_the_rq_queue(rendered):
    (scaled,) = objects(rendered, "prod", "ScaledObject")
    worker = one(rendered, "prod", "Deployment", "dtm-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"
    # Never zero: the RQ scheduler that moves due jobs to the queue runs inside the workers.
    assert scaled["spec"]["minReplicaCount"] >= 1
    (trigger,) = scaled["spec"]["triggers"]
    settings = configmap(rendered, "prod")["data"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == f"rq:queue:{settings['DTM_QUEUE_NAME']}"
    # The address is the Redis that REDIS_URL names, fully qualified in the overlay's namespace.
    namespace = scaled["metadata"]["namespace"]
    redis_host = settings["REDIS_URL"].split("//")[1].split("/")[0]
    host, port = redis_host.split(":")
    assert trigger["metadata"]["address"] == f"{host}.{namespace}.svc.cluster.local:{port}"
    assert trigger["metadata"]["databaseIndex"] == settings["REDIS_URL"].rsplit("/", 1)[1]
    one(rendered, "prod", "Service", host)


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_pdb_covers_the_workers(rendered, overlay):
    (pdb,) = objects(rendered, overlay, "PodDisruptionBudget")
    worker = one(rendered, overlay, "Deployment", "dtm-worker")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_prometheus_finds_every_dtm_pod(rendered):
    # base: annotations; prod: a PodMonitor (and no annotations, against double scraping).
    for component, template in pod_templates(rendered, "base"):
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8000"
    (monitor,) = objects(rendered, "prod", "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    selected = 0
    for kind in ("Deployment", "StatefulSet"):
        for doc in objects(rendered, "prod", kind):
            template = doc["spec"]["template"]
            ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
            if selector.items() <= template["metadata"]["labels"].items():
                selected += 1
                assert endpoint["port"] in ports, doc["metadata"]["name"]
            assert not any(key.startswith("prometheus.io/") for key in template["metadata"].get("annotations", {}))
    assert selected == len(COMPONENTS)
    targets = {relabel["targetLabel"] for relabel in endpoint["relabelings"]}
    assert "app" in targets


def test_prod_uses_a_pinned_image_in_one_namespace(rendered):
    namespaces = {doc["metadata"].get("namespace") for doc in rendered["prod"] if doc["kind"] != "Namespace"}
    assert namespaces == {"dtm"}
    for _, template in pod_templates(rendered, "prod"):
        for container in template["spec"]["containers"]:
            name, _, tag = container["image"].rpartition(":")
            assert "/" in name and tag and tag != "latest", container["image"]
