"""The KubeRay manifests against KubeRay's own CRD schemas (infra/kuberay/crds/, v1.7.0), not against our idea of them.

The API server validates a custom resource with the CRD's structural ``openAPIV3Schema``; these tests do the same with
Python's ``jsonschema``, reading the schema as the server does:
- unknown fields: a structural schema lists every field of an object (``properties``); the server prunes the others, and
  rejects them under strict field validation (``kubectl apply``'s default since 1.27). So an object with ``properties``
  and no ``additionalProperties`` gets ``additionalProperties: false`` here, unless it says
  ``x-kubernetes-preserve-unknown-fields: true`` (KubeRay's v1 CRDs have none: every field is listed, pod templates too);
- the root ``metadata`` (``type: object`` alone in the CRD) is the server's ObjectMeta: its fields are listed below;
- ``nullable: true`` lets a field be null; ``x-kubernetes-int-or-string`` is the ``anyOf`` [integer, string] beside it;
- ``x-kubernetes-list-type: map`` with ``x-kubernetes-list-map-keys``: items unique on those keys (defaults applied),
  ``set``: unique items;
- ``x-kubernetes-validations`` (CEL rules) are not evaluated here: a manifest that sets a field a rule guards fails, so
  a rule can never pass here and fail on the server.
Core kinds: the PersistentVolumeClaim is validated against the PersistentVolumeClaimSpec schema that the same CRD embeds
(a pod's ephemeral volume claim template), the ConfigMap's data must be strings.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "infra" / "kuberay"
CRDS = KUBERAY / "crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}
OBJECT_META = {  # metav1.ObjectMeta: what the server accepts under metadata
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"}, "generateName": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array"}, "uid": {"type": "string"}, "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"}, "creationTimestamp": {}, "deletionTimestamp": {},
        "deletionGracePeriodSeconds": {"type": "integer"}, "managedFields": {"type": "array"},
        "selfLink": {"type": "string"},
    },
}


def load_yaml_docs(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 3 MB
    return [d for d in yaml.load_all(path.read_text(), Loader=loader) if d is not None]


def strict(schema):
    """The schema as the API server applies it (see the module docstring): unknown fields rejected."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _type(validator, types, instance, schema):
    if instance is None and schema.get("nullable"):
        return
    yield from jsonschema.Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


def _list_map_keys(validator, keys, instance, schema):
    if not isinstance(instance, list):
        return
    props = schema.get("items", {}).get("properties", {})
    seen = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, props.get(k, {}).get("default")) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"items {seen[key]} and {i} have the same key {dict(zip(keys, key, strict=True))} "
                                             "(x-kubernetes-list-type: map)")
        seen[key] = i


def _list_type(validator, kind, instance, schema):
    if kind == "set" and isinstance(instance, list):
        dumped = [yaml.safe_dump(x, sort_keys=True) for x in instance]
        if len(set(dumped)) != len(dumped):
            yield jsonschema.ValidationError("duplicate items in a list of type set")


def _cel(validator, rules, instance, schema):
    yield jsonschema.ValidationError(
        "this field is guarded by CEL rules that these tests do not evaluate: "
        + "; ".join(r.get("message", r.get("rule", "")) for r in rules))


KubeValidator = jsonschema.validators.extend(jsonschema.Draft4Validator, {
    "type": _type, "x-kubernetes-list-map-keys": _list_map_keys, "x-kubernetes-list-type": _list_type,
    "x-kubernetes-validations": _cel})


@functools.cache
def crd(kind: str) -> dict:
    (doc,) = load_yaml_docs(CRDS / CRD_FILES[kind])
    assert doc["kind"] == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind
    return doc


@functools.cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    (v1,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == "v1"]
    assert v1["served"] and v1["storage"], f"{kind}: ray.io/v1 is not the served storage version"
    schema = strict(v1["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return KubeValidator(schema)


@functools.cache
def pvc_spec_validator() -> jsonschema.protocols.Validator:
    """Kubernetes' PersistentVolumeClaimSpec, as the RayCluster CRD embeds it (ephemeral volume claim templates)."""
    (v1,) = [v for v in crd("RayCluster")["spec"]["versions"] if v["name"] == "v1"]
    pod = v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["headGroupSpec"]["properties"][
        "template"]["properties"]["spec"]
    claim = pod["properties"]["volumes"]["items"]["properties"]["ephemeral"]["properties"]["volumeClaimTemplate"]
    return KubeValidator(strict(claim["properties"]["spec"]))


def schema_errors(doc: dict) -> list[str]:
    """Why the API server would refuse ``doc`` (empty if it accepts it), for the kinds we apply."""
    kind = doc.get("kind")
    if kind in CRD_FILES:
        if doc.get("apiVersion") != "ray.io/v1":
            return [f"apiVersion {doc.get('apiVersion')!r}: KubeRay v1.7.0 serves ray.io/v1"]
        v = validator(kind)
    elif kind == "PersistentVolumeClaim":
        v = KubeValidator({"type": "object", "additionalProperties": False, "required": ["apiVersion", "metadata", "spec"],
                           "properties": {"apiVersion": {"enum": ["v1"]}, "kind": {}, "metadata": OBJECT_META,
                                          "spec": pvc_spec_validator().schema}})
    elif kind == "ConfigMap":
        v = KubeValidator({"type": "object", "additionalProperties": False, "required": ["apiVersion", "metadata"],
                           "properties": {"apiVersion": {"enum": ["v1"]}, "kind": {}, "metadata": OBJECT_META,
                                          "data": {"type": "object", "additionalProperties": {"type": "string"}},
                                          "binaryData": {"type": "object"}, "immutable": {"type": "boolean"}}})
    else:
        return [f"kind {kind!r}: no schema here for it"]
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def kuberay_manifests(folder: Path = KUBERAY) -> list[tuple[str, dict]]:
    """(file name, document) of every Kubernetes object in ``folder`` (not the CRDs, not the kustomization)."""
    out = []
    for p in sorted(folder.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        out += [(p.name, d) for d in load_yaml_docs(p)]
    return out


# -- the manifests ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,doc", kuberay_manifests(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_manifest_is_accepted_by_the_crd_schema(name, doc):
    assert schema_errors(doc) == [], name


def test_the_manifests_cover_every_kind_we_deploy():
    kinds = sorted(d["kind"] for _, d in kuberay_manifests())
    assert kinds == ["ConfigMap", "PersistentVolumeClaim", "RayCluster", "RayJob", "RayJob", "RayJob", "RayService"]


# -- the validation is strict: it rejects what the API server rejects ------------------------------------------------

def _doc(kind: str) -> dict:
    return copy.deepcopy([d for _, d in kuberay_manifests() if d["kind"] == kind][0])


def _bad(kind, edit) -> list[str]:
    doc = _doc(kind)
    edit(doc)
    return schema_errors(doc)


@pytest.mark.parametrize("kind,edit,expected", [
    # a field KubeRay does not have (v1alpha1's serveConfig, a typo) is rejected, at the top and deep in a pod template
    ("RayService", lambda d: d["spec"].update(serveConfig={}), "Additional properties are not allowed ('serveConfig'"),
    ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=3), "'maxReplica' was unexpected"),
    ("RayCluster", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="x"),
     "'imagePullPolicyy' was unexpected"),
    ("RayService", lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"].update(metadata={"label": {}}),
     "'label' was unexpected"),
    ("RayJob", lambda d: d["metadata"].update(lables={}), "'lables' was unexpected"),
    # types, required fields, int-or-string, map-typed lists
    ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas="4"), "'4' is not of type 'integer'"),
    ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].pop("minReplicas"), "'minReplicas' is a required property"),
    ("RayCluster", lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
     "0 is not of type 'string'"),
    ("RayCluster", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].append(
        {"name": "again", "containerPort": 6379}), "have the same key"),
    ("RayJob", lambda d: d["spec"].update(submissionMode=3), "3 is not of type 'string'"),
    # a CEL-guarded field fails here rather than pass unevaluated
    ("RayJob", lambda d: d["spec"].update(managedBy="ray.io/kuberay-operator"), "guarded by CEL rules"),
    # the core kinds
    ("PersistentVolumeClaim", lambda d: d["spec"].update(accessMode=["ReadWriteMany"]), "'accessMode' was unexpected"),
    ("ConfigMap", lambda d: d["data"].update(n=1), "1 is not of type 'string'"),
])
def test_schema_validation_rejects_what_the_api_server_rejects(kind, edit, expected):
    errors = _bad(kind, edit)
    assert any(expected in e for e in errors), errors


def test_int_or_string_quantities_are_accepted_both_ways():
    def edit(d):
        d["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = 8
    assert _bad("RayCluster", edit) == []
