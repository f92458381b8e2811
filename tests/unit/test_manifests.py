"""What a platform team applies (infra/): every YAML parses, the KubeRay manifests run real commands
with real flags and real config keys, and the production topics survive a broker down. The manifests against
KubeRay itself: tests/unit/test_kuberay_crds.py (its CRD schemas) and test_kuberay_checks.py (what they cannot say)."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import shlex
from pathlib import Path

import pytest
import yaml

from oneloc.cli import COMMANDS
from oneloc.config import load_config
from oneloc.infra.topics import parse_topics

INFRA = Path(__file__).resolve().parents[2] / "infra"
KUBERAY = INFRA / "kuberay"
CONFIG_MOUNT = "/etc/oneloc"


def docs(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: infra/kuberay/crds/ holds 3 MB of YAML
    return [d for d in yaml.load_all(path.read_text(), Loader=loader) if d is not None]


def manifests(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted(KUBERAY.glob("*.yaml")) for d in docs(p) if d.get("kind") == kind]


def test_every_yaml_under_infra_parses():
    files = sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))
    assert len(files) >= 8
    for f in files:
        assert docs(f), f"{f} is empty"


def parse_cli(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """Parse ``oneloc ...`` as oneloc/cli.py does: global options, then the command's own parser."""
    from oneloc.cli import _parser

    assert argv[0] == "oneloc", argv
    ns, rest = _parser().parse_known_args(argv[1:])
    assert ns.command in COMMANDS, f"unknown command in {argv}"
    sub = argparse.ArgumentParser(prog=f"oneloc {ns.command}", exit_on_error=False)
    importlib.import_module(COMMANDS[ns.command][0]).add_arguments(sub)
    try:
        return ns.command, sub.parse_args(rest)
    except SystemExit as e:  # argparse exits on unknown flags even with exit_on_error=False
        raise AssertionError(f"`{' '.join(argv)}` is rejected by its parser") from e


def test_parse_cli_rejects_unknown_flags():  # the check below can fail
    with pytest.raises(AssertionError):
        parse_cli(["oneloc", "ingest", "--no-such-flag"])


@pytest.mark.parametrize("job", ["ingest", "train", "rl"])
def test_rayjob_entrypoints_are_real_commands(job):
    (path, doc), = [(p, d) for p, d in manifests("RayJob") if p.name == f"rayjob-{job}.yaml"]
    command, args = parse_cli(shlex.split(doc["spec"]["entrypoint"]))
    assert command == job
    assert getattr(args, "address", None) == "auto", "a RayJob must join the cluster it was submitted to"
    env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["ONELOC_CONFIG"] == f"{CONFIG_MOUNT}/oneloc.yaml"
    assert doc["spec"]["clusterSelector"]["ray.io/cluster"] == manifests("RayCluster")[0][1]["metadata"]["name"]


def test_configmap_is_a_valid_config(tmp_path):
    (_, cm), = manifests("ConfigMap")
    text = cm["data"]["oneloc.yaml"]
    (tmp_path / "oneloc.yaml").write_text(text)
    cfg = load_config(tmp_path / "oneloc.yaml")  # unknown keys are rejected here
    assert cfg.storage.root.startswith("s3://")
    assert cfg.storage.table("orders").startswith("s3://")
    assert len(cfg.kafka.servers().split(",")) == 3
    assert (INFRA.parent / cfg.kafka.topics_file).is_file()
    assert cfg.kafka.topics_file == "infra/topics-production.yaml"


def test_pods_mount_the_configmap_where_the_jobs_read_it():
    (_, cm), = manifests("ConfigMap")
    for kind in ("RayCluster", "RayService"):
        for path, doc in manifests(kind):
            spec = doc["spec"]["rayClusterConfig"] if kind == "RayService" else doc["spec"]
            groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            for g in groups:
                pod = g["template"]["spec"]
                volumes = {v["name"]: v for v in pod["volumes"]}
                for c in pod["containers"]:
                    assert c["image"].split(":")[0] in ("oneloc-ray", "oneloc-ray-gpu"), (path, c["image"])
                    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                    assert volumes[mounts[CONFIG_MOUNT]]["configMap"]["name"] == cm["metadata"]["name"], path
            assert spec.get("rayVersion", "2.60.0") == "2.60.0"


def test_rayservice_imports_a_real_app_with_real_overrides():
    for path, doc in manifests("RayService"):
        serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
        for app in serve["applications"]:
            module, attr = app["import_path"].split(":")
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin, (path, module)
            tree = ast.parse(Path(spec.origin).read_text())
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
            names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                      if isinstance(t, ast.Name)}
            assert attr in names, f"{path}: {module} defines no {attr}"
            load_config(overrides=app.get("args", {}).get("overrides", []))  # real keys, valid values


def test_production_topics_have_replication_3():
    prod = parse_topics((INFRA / "topics-production.yaml").read_text()).topics
    local = parse_topics((INFRA / "topics.yaml").read_text()).topics
    assert set(prod) == set(local)
    for role, t in prod.items():
        assert t.replication_factor == 3, role
        assert int(t.configs.get("min.insync.replicas", 1)) == 2, role  # acks=all survives one broker down
        assert (t.name, t.partitions, t.value_schema) == (local[role].name, local[role].partitions,
                                                          local[role].value_schema)


def test_rayservice_pods_get_the_ray_serve_settings_of_the_app():
    from oneloc.serving.config import SERVE_ENV

    for path, doc in manifests("RayService"):
        spec = doc["spec"]["rayClusterConfig"]
        for pod in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
            for c in pod["template"]["spec"]["containers"]:
                env = {e["name"]: e["value"] for e in c.get("env", [])}
                assert {k: env.get(k) for k in SERVE_ENV} == SERVE_ENV, (path, c["name"])
