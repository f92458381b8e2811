"""What a CRD schema cannot say about the KubeRay manifests: will they deploy and work together with this code?

Each check reads a deployment (a folder of manifests, its kustomization and the Dockerfile) and returns its problems,
each starting with the check's name. They encode how KubeRay v1.7.0 and this project behave, with where it is written:
- head-ports: when the head's Ray container declares any port, KubeRay builds the head Service from the declared ports
  alone (ray-operator/controllers/ray/common/service.go, getServicePorts) and finds the dashboard by the port name
  `dashboard`; the RayJob submitter and the RayService's Serve reconcile go through it, so gcs-server, dashboard, client
  and metrics are needed (and serve on a RayService: the Serve Service is built from it).
- gpu-reach: `oneloc train|rl --workers N --gpu` asks Ray for N workers of one GPU and train.cpus_per_worker CPUs each
  (ray_jobs/train.py); the cluster the RayJob selects must be able to hold them: GPU pods at maxReplicas with the
  autoscaler on, else at replicas. gpu-nodes: GPU pods tolerate the GPU taint, select GPU nodes and run the CUDA build.
- gpu-measured: the GPU RayJobs and pods carry what was measured on 2 x H200 (docs/results/gpu/): the per-worker batch
  that scaled best 2 GPUs vs 1 (bench-train-b*.json), the device feed, both set in the ConfigMap itself (a new default
  does not change the cluster unseen); the NCCL/NVLink-multicast environment of the measured runs (setup.sh) in the
  job's runtime env (it reaches the Ray Train workers); the measured 2 ranks on one pod (one host, NVLink: nccl.json);
  per GPU at least CPUS_PER_GPU CPUs and MEMORY_PER_GPU_GIB of memory, requests = limits (the sizing of
  raycluster.yaml's gpu group, docs/OPERATIONS.md "GPU sizing"); no Serve GPU pods while serve.num_gpus is 0; with
  serve.num_gpus > 0, the GPU share, max_batch_size and batch_wait_timeout_s of the best measured Serve GPU setting
  (serve-gpu*.json: HTTP at concurrency 32-512 on one H200; the most requests/s within p99 50 ms, else with no errors).
- storage: the trainer (RayCluster pods) writes checkpoints to storage.checkpoints and reports to storage.reports of the
  ConfigMap; Serve reads the folder args.checkpoint, else serve.checkpoint, else storage.checkpoints
  (serving/app.py) through local file calls only (serving/rollout.py), and reports are written with pathlib
  (ray_jobs/train_log.py). So both are local paths on one ReadWriteMany claim that every writer pod mounts writable
  and every Serve pod mounts, at the same place within the volume; the claim is defined here.
- serve-config: the RayService's serveConfigV2 is infra/serve_config.yaml except the DOCUMENTED_OVERRIDES, and Ray's
  own ServeDeploySchema accepts it.
- deprecated: fields KubeRay keeps in the CRD but ignores (apis/ray/v1/rayservice_types.go: "Deprecated: This field is
  not used anymore", kuberay#1685).
- comments: the Services a comment names are those KubeRay creates (<rayservice>-serve-svc, <name>-head-svc), a
  `file.py NAME` a comment names defines NAME, and every repository path a comment names exists.
- images: every image goes through the kustomization's `images` (the registry setting) and every manifest but the
  RayJobs is in its resources; versions: rayVersion = the lock's Ray = the Dockerfile's base image.
- kuberay-validation: the rules of KubeRay's webhook/controller validation (controllers/ray/utils/validation.go) that
  apply to these manifests.
- dockerfile: Ray's images run as `ray` (uid 1000, group users): COPY --chown to it, pip as it; the project installed
  editable (oneloc.paths.REPO_ROOT must stay the repository: data/, infra/*.yaml are read at run time); a GPU build.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from oneloc.config import load_config
from tests.unit.test_kuberay_crds import KUBERAY, REPO, kuberay_manifests
from tests.unit.test_manifests import parse_cli

BEFORE = Path(__file__).with_name("kuberay_before_issue18")
SERVE_CONFIG = REPO / "infra" / "serve_config.yaml"
GPU = "nvidia.com/gpu"
GPUS_PER_TRAIN_WORKER = 1  # ray_jobs/train.py: resources_per_worker {"GPU": 1} with --gpu (test below)
GPU_RESULTS = REPO / "docs" / "results" / "gpu"
MEASURED_GPUS_PER_HOST = 2  # the 2 x H200 runs: both ranks on one host (NVLink)
# Per GPU worker (raycluster.yaml gpu group says why): one core busy with the host-bound step, the feed build, NCCL and
# Ray threads; 32 GiB hold a shard of ~6M samples while its device feed is built (feed-footprint.json).
CPUS_PER_GPU, MEMORY_PER_GPU_GIB = 4, 32
DEFAULT_HEAD_PORTS = {"gcs-server": ("port", 6379), "dashboard": ("dashboard-port", 8265),
                      "client": ("ray-client-server-port", 10001), "metrics": ("metrics-export-port", 8080)}
DEPRECATED = {"serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold"}
# Where the RayService's Serve config may differ from infra/serve_config.yaml, and why (docs/OPERATIONS.md lists them).
DOCUMENTED_OVERRIDES = {
    "http_options.host": "reached through the Kubernetes Service, so not loopback: 0.0.0.0",
    "proxy_location": "EveryNode: every pod runs a proxy and is an endpoint of the Serve Service",
    "applications.0.args.overrides": "the cluster's sizing (replicas, CPUs, batching, GPU) and histories bootstrap",
}


@dataclass
class Deploy:
    folder: Path
    dockerfile: str
    docs: list[tuple[str, dict]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    kustomization: dict | None = None

    @classmethod
    def load(cls, folder: Path, dockerfile: Path) -> Deploy:
        kust = folder / "kustomization.yaml"
        return cls(folder, dockerfile.read_text(), kuberay_manifests(folder),
                   {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))},
                   yaml.safe_load(kust.read_text()) if kust.exists() else None)

    def of(self, kind: str) -> list[tuple[str, dict]]:
        return [(n, d) for n, d in self.docs if d.get("kind") == kind]

    def config(self, overrides=()):
        (_, cm), = self.of("ConfigMap")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(cm["data"]["oneloc.yaml"])
            f.flush()
            return load_config(f.name, list(overrides))

    def serve_app(self) -> tuple[dict, dict]:
        (_, svc), = self.of("RayService")
        conf = yaml.safe_load(svc["spec"]["serveConfigV2"])
        return conf, conf["applications"][0]


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterConfig"] if doc["kind"] == "RayService" else doc["spec"]


def groups(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay: the Ray container is the first one


def quantity(q) -> float:
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def gib(q) -> float:
    """A Kubernetes memory quantity in GiB (Ki/Mi/Gi/Ti, k/M/G/T, or bytes)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]i?|k)?", str(q))
    scale = {None: 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * scale / 2**30


# -- the checks --------------------------------------------------------------------------------------------------

def check_head_ports(d: Deploy) -> list[str]:
    out = []
    for name, doc in d.of("RayCluster") + d.of("RayService"):
        head = cluster_spec(doc)["headGroupSpec"]
        ports = {p.get("name", f"{p['containerPort']}-port"): p["containerPort"]
                 for p in ray_container(head).get("ports", [])}
        if not ports:
            continue  # KubeRay's defaults: all of them
        params = head.get("rayStartParams", {})
        need = {n: int(params.get(flag, port)) for n, (flag, port) in DEFAULT_HEAD_PORTS.items()}
        if doc["kind"] == "RayService":
            need["serve"] = int((d.serve_app()[0].get("http_options") or {}).get("port", 8000))
        for port_name, port in need.items():
            if ports.get(port_name) != port:
                out.append(f"head-ports: {name}: the head declares ports {sorted(ports)} but not {port_name}:{port}; "
                           "KubeRay's head Service then lacks it")
    return out


def gpu_capacity(spec: dict, cpus_per_worker: float, gpus_per_worker: float) -> tuple[int, list[str]]:
    """Workers of (gpus_per_worker GPUs, cpus_per_worker CPUs) the cluster can hold at most, and how."""
    total, how = 0, []
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    for gname, g in groups(spec)[1:]:
        limits = ray_container(g).get("resources", {}).get("limits", {})
        gpus = quantity(limits.get(GPU, 0))
        if gpus <= 0:
            continue
        per_pod = math.floor(gpus / gpus_per_worker)
        if cpus_per_worker > 0 and "cpu" in limits:
            per_pod = min(per_pod, math.floor(quantity(limits["cpu"]) / cpus_per_worker))
        pods = g.get("maxReplicas", 0) if autoscaling else g.get("replicas", g.get("minReplicas", 0))
        total += pods * g.get("numOfHosts", 1) * per_pod
        how.append(f"{gname}: {pods} pods x {per_pod} ({'maxReplicas, autoscaling on' if autoscaling else 'replicas, autoscaling off'})")
    return total, how


def check_gpu_reach(d: Deploy) -> list[str]:
    out = []
    cfg = d.config()
    clusters = {doc["metadata"]["name"]: doc for _, doc in d.of("RayCluster")}
    for name, job in d.of("RayJob"):
        command, args = parse_cli(shlex.split(job["spec"]["entrypoint"]))
        if not getattr(args, "gpu", False):
            continue
        target = job["spec"].get("clusterSelector", {}).get("ray.io/cluster")
        if target not in clusters:
            out.append(f"gpu-reach: {name}: selects cluster {target!r}, not defined here")
            continue
        workers = args.workers or cfg.train.workers
        have, how = gpu_capacity(clusters[target]["spec"], cfg.train.cpus_per_worker, GPUS_PER_TRAIN_WORKER)
        if have < workers:
            out.append(f"gpu-reach: {name}: `oneloc {command}` waits for {workers} GPU workers; cluster {target} "
                       f"can hold {have} ({'; '.join(how) or 'no GPU group'})")
    for name, svc in d.of("RayService"):
        s = d.config(d.serve_app()[1].get("args", {}).get("overrides", [])).serve
        if s.num_gpus > 0:
            have, how = gpu_capacity(cluster_spec(svc), s.num_cpus, s.num_gpus)
            if have < s.min_replicas:
                out.append(f"gpu-reach: {name}: serve.num_gpus={s.num_gpus} x serve.min_replicas={s.min_replicas} "
                           f"replicas, the cluster can hold {have} ({'; '.join(how) or 'no GPU group'})")
    return out


def check_gpu_nodes(d: Deploy) -> list[str]:
    out = []
    for name, doc in d.of("RayCluster") + d.of("RayService"):
        for gname, g in groups(cluster_spec(doc)):
            pod = g["template"]["spec"]
            if quantity(ray_container(g).get("resources", {}).get("limits", {}).get(GPU, 0)) <= 0:
                continue
            if not any(t.get("key") == GPU for t in pod.get("tolerations", [])):
                out.append(f"gpu-nodes: {name} {gname}: no toleration of the {GPU} taint that GPU nodes carry")
            if not pod.get("nodeSelector") and not pod.get("affinity"):
                out.append(f"gpu-nodes: {name} {gname}: no nodeSelector/affinity for GPU nodes")
            image = ray_container(g)["image"].rsplit(":", 1)[0]
            if not image.endswith("-gpu"):
                out.append(f"gpu-nodes: {name} {gname}: image {image} is not the CUDA build (infra/docker/Dockerfile "
                           "RAY_IMAGE ...-gpu, named *-gpu)")
    return out


def measured_env() -> dict[str, str]:
    """The NCCL / PyTorch / NVSHMEM variables every measured GPU run exported (docs/results/gpu/setup.sh)."""
    text = (GPU_RESULTS / "setup.sh").read_text()
    return dict(re.findall(r"\b((?:NCCL|TORCH_SYMM_MEM|NVSHMEM)_\w+)=(\S+)", text))


def measured_batch() -> int:
    """The per-worker batch whose 2-GPU run scaled best against 1 GPU (bench-train-b*.json), with Ray Train at
    >= 0.9x the plain loop per GPU there (issue 15's feed target)."""
    runs = [json.loads(p.read_text()) for p in sorted(GPU_RESULTS.glob("bench-train-b*.json"))]
    best = max(runs, key=lambda r: r["speedup_2_vs_1_workers"])
    ray1 = next(r for r in best["runs"] if r["path"] == "ray" and r["workers"] == 1 and r["feed"] == "device")
    plain = next(r for r in best["runs"] if r["path"] == "plain" and r["feed"] == "device")
    assert ray1["samples_per_s_per_worker"] >= 0.9 * plain["samples_per_s_per_worker"], best
    return ray1["batch_per_worker"]


def measured_serve() -> dict:
    """The Serve settings of the best GPU run over HTTP (docs/results/gpu/serve-gpu*.json: bench_serve --device cuda
    --http, several settings per run): the most requests/s within p99 50 ms, else (none met it on the H200) the
    most requests/s with no errors."""
    levels = [(lv, r["serve"]) for p in sorted(GPU_RESULTS.glob("serve-gpu*.json"))
              for r in json.loads(p.read_text()).get("settings_runs", []) for lv in r["levels"] if lv["error_rate"] == 0]
    within = [x for x in levels if x[0]["p99_ms"] <= 50.0]
    return max(within or levels, key=lambda x: x[0]["throughput_rps"])[1]


SERVE_GPU_KEYS = ("num_gpus", "max_batch_size", "batch_wait_timeout_s")


def job_config(d: Deploy, job: dict):
    """The config a RayJob runs with: the ConfigMap and its entrypoint's global `--set KEY=VALUE`."""
    from oneloc.cli import _parser

    ns, _ = _parser().parse_known_args(shlex.split(job["spec"]["entrypoint"])[1:])
    return d.config(ns.overrides)


def check_gpu_measured(d: Deploy) -> list[str]:
    out = []
    (_, cm), = d.of("ConfigMap")
    explicit = (yaml.safe_load(cm["data"]["oneloc.yaml"]) or {}).get("train") or {}
    clusters = {doc["metadata"]["name"]: doc for _, doc in d.of("RayCluster")}
    env_want, batch_want = measured_env(), measured_batch()
    gpu_jobs = [(name, job, *parse_cli(shlex.split(job["spec"]["entrypoint"]))) for name, job in d.of("RayJob")]
    gpu_jobs = [j for j in gpu_jobs if getattr(j[3], "gpu", False)]
    out += [f"gpu-measured: the ConfigMap does not set train.{key} itself (a new default would change the GPU jobs "
            "unseen)" for key in ("batch_size", "feed") if gpu_jobs and key not in explicit]
    for name, job, command, args in gpu_jobs:
        cfg = job_config(d, job)
        if command == "train" and cfg.train.batch_size != batch_want:
            out.append(f"gpu-measured: {name}: train.batch_size {cfg.train.batch_size}, measured best per GPU: "
                       f"{batch_want} (docs/results/gpu/bench-train-b*.json)")
        if cfg.train.feed != "device":
            out.append(f"gpu-measured: {name}: train.feed {cfg.train.feed}; measured: device (stream starves the "
                       "GPU)")
        env = (yaml.safe_load(job["spec"].get("runtimeEnvYAML") or "{}") or {}).get("env_vars") or {}
        for k, v in env_want.items():
            if str(env.get(k)) != v:
                out.append(f"gpu-measured: {name}: runtime env {k}={env.get(k)}, the measured runs had {k}={v} "
                           "(docs/results/gpu/setup.sh)")
        target = clusters.get(job["spec"].get("clusterSelector", {}).get("ray.io/cluster"))
        gpu_groups = [(g, ray_container(g).get("resources", {})) for _, g in groups(cluster_spec(target))[1:]
                      if quantity(ray_container(g).get("resources", {}).get("limits", {}).get(GPU, 0)) > 0] \
            if target else []
        workers = args.workers or cfg.train.workers
        per_pod = max((quantity(r["limits"][GPU]) for _, r in gpu_groups), default=0)
        if gpu_groups and per_pod < min(workers, MEASURED_GPUS_PER_HOST):
            out.append(f"gpu-measured: {name}: {workers} workers on pods of {per_pod:g} GPU: the measured ranks "
                       f"shared a host (NVLink); give the GPU group {MEASURED_GPUS_PER_HOST} GPUs per pod")
    for name, doc in d.of("RayCluster") + d.of("RayService"):
        for gname, g in groups(cluster_spec(doc))[1:]:
            res = ray_container(g).get("resources", {})
            gpus = quantity(res.get("limits", {}).get(GPU, 0))
            if gpus <= 0:
                continue
            lim, req = res.get("limits", {}), res.get("requests", {})
            cpus, mem = quantity(lim.get("cpu", 0)), gib(lim.get("memory", 0))
            if cpus < CPUS_PER_GPU * gpus or mem < MEMORY_PER_GPU_GIB * gpus:
                out.append(f"gpu-measured: {name} {gname}: {lim.get('cpu')} CPUs, {lim.get('memory')} for {gpus:g} "
                           f"GPUs; a GPU worker needs {CPUS_PER_GPU} CPUs and {MEMORY_PER_GPU_GIB}Gi")
            if {k: str(v) for k, v in req.items()} != {k: str(v) for k, v in lim.items()}:
                out.append(f"gpu-measured: {name} {gname}: requests {req} != limits {lim}")
    for name, svc in d.of("RayService"):
        s = d.config(d.serve_app()[1].get("args", {}).get("overrides", [])).serve
        for gname, g in groups(cluster_spec(svc))[1:]:
            gpus = quantity(ray_container(g).get("resources", {}).get("limits", {}).get(GPU, 0))
            if gpus > 0 and s.num_gpus <= 0 and max(g.get("replicas", 0), g.get("minReplicas", 0)) > 0:
                out.append(f"gpu-measured: {name} {gname}: GPU pods while serve.num_gpus={s.num_gpus}: no replica "
                           "uses them")
        if s.num_gpus > 0:  # the model replicas on GPUs: the batching measured there (serve-gpu.json)
            want = measured_serve()
            out += [f"gpu-measured: {name}: serve.{k} {getattr(s, k)}, measured on the H200: {want[k]} "
                    "(docs/results/gpu/serve-gpu*.json)" for k in SERVE_GPU_KEYS if getattr(s, k) != want[k]]
    return out


def _on_volume(pod: dict, path: str) -> tuple[str, str, bool] | str:
    """(claim, path within the volume, read-only) of ``path`` in a pod, or why it is not on a claim."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    c = pod["containers"][0]
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    if best is None:
        return f"{path} is on no volume of the pod"
    claim = volumes.get(best["name"], {}).get("persistentVolumeClaim")
    if not claim:
        return f"{path} is on volume {best['name']}, not a PersistentVolumeClaim"
    rel = "/".join(x for x in (best.get("subPath", ""), path[len(best["mountPath"].rstrip("/")):].strip("/")) if x)
    return claim["claimName"], rel, bool(best.get("readOnly") or claim.get("readOnly"))


def check_storage(d: Deploy) -> list[str]:
    out = []
    cfg = d.config()
    writes = {"storage.checkpoints": cfg.storage.path(cfg.storage.checkpoints),
              "storage.reports": cfg.storage.path(cfg.storage.reports)}
    targets = {job["spec"].get("clusterSelector", {}).get("ray.io/cluster") for _, job in d.of("RayJob")
               if parse_cli(shlex.split(job["spec"]["entrypoint"]))[0] in ("train", "rl")}
    writers = [(n, doc) for n, doc in d.of("RayCluster") if doc["metadata"]["name"] in targets]
    where: dict[str, set] = {}
    for key, path in writes.items():
        if "://" in path:
            why = ("Serve reads checkpoints through local file calls only (serving/rollout.py)"
                   if key == "storage.checkpoints" else "reports are written with pathlib (ray_jobs/train_log.py)")
            out.append(f"storage: {key} is {path}, an object-store URI: {why}")
            continue
        for name, doc in writers:
            for gname, g in groups(cluster_spec(doc)):
                got = _on_volume(g["template"]["spec"], path)
                if isinstance(got, str):
                    out.append(f"storage: {name} {gname}: {key} {got}")
                elif got[2]:
                    out.append(f"storage: {name} {gname}: {key} {path} is mounted read-only")
                else:
                    where.setdefault(key, set()).add(got[:2])
    ckpt = where.get("storage.checkpoints", set())
    if len(ckpt) > 1:
        out.append(f"storage: the trainer's pods put storage.checkpoints on different volumes: {sorted(ckpt)}")
    for name, svc in d.of("RayService"):
        app = d.serve_app()[1]
        args = app.get("args", {})
        scfg = d.config(args.get("overrides", []))
        reads = args.get("checkpoint") or scfg.serve.checkpoint or scfg.storage.path(scfg.storage.checkpoints)
        if "://" in reads:
            out.append(f"storage: {name}: Serve reads {reads}: an object-store URI, and serving/rollout.py reads "
                       "local paths only")
            continue
        for gname, g in groups(cluster_spec(svc)):
            got = _on_volume(g["template"]["spec"], reads)
            if isinstance(got, str):
                out.append(f"storage: {name} {gname}: Serve's checkpoint folder {got}")
            elif not any(got[0] == claim and (got[1] == rel or got[1].startswith(rel + "/") or not rel)
                         for claim, rel in ckpt):
                out.append(f"storage: {name} {gname}: Serve reads {reads} = {got[:2]} on its volume, the trainer "
                           f"writes {writes['storage.checkpoints']} = {sorted(ckpt) or 'no shared volume'}")
    claims = {c for c, _ in ckpt}
    for _, doc in d.of("RayCluster") + d.of("RayService"):
        for _, g in groups(cluster_spec(doc)):
            for v in g["template"]["spec"].get("volumes", []):
                if "persistentVolumeClaim" in v:
                    claims.add(v["persistentVolumeClaim"]["claimName"])
    defined = {doc["metadata"]["name"]: doc for _, doc in d.of("PersistentVolumeClaim")}
    for claim in sorted(claims):
        if claim not in defined:
            out.append(f"storage: the PersistentVolumeClaim {claim} is mounted but defined nowhere")
        elif "ReadWriteMany" not in defined[claim]["spec"].get("accessModes", []):
            out.append(f"storage: {claim} is mounted by pods on several nodes but is not ReadWriteMany")
    return out


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                yield p
            else:
                yield from _diff(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}.{i}")
    elif a != b:
        yield path


def check_serve_config(d: Deploy) -> list[str]:
    from ray.serve.schema import ServeDeploySchema

    out = []
    base = yaml.safe_load(SERVE_CONFIG.read_text())
    for name, _ in d.of("RayService"):
        conf = d.serve_app()[0]
        try:
            ServeDeploySchema.model_validate(conf)
        except Exception as e:  # pydantic's ValidationError: the reason is in the message
            out.append(f"serve-config: {name}: Ray's ServeDeploySchema refuses serveConfigV2: {e}")
        for p in _diff(base, conf):
            if not any(p == o or p.startswith(o + ".") for o in DOCUMENTED_OVERRIDES):
                out.append(f"serve-config: {name}: serveConfigV2 differs from infra/serve_config.yaml at {p} "
                           "(not a documented override)")
    return out


def check_deprecated(d: Deploy) -> list[str]:
    return [f"deprecated: {name}: {k} is not used by KubeRay (deprecated, kuberay#1685)"
            for name, doc in d.of("RayService") for k in sorted(DEPRECATED & set(doc["spec"]))]


def _defines(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    return name in names


def check_comments(d: Deploy) -> list[str]:
    out = []
    services = set()
    for _, doc in d.of("RayService"):
        services |= {f"{doc['metadata']['name']}-serve-svc", f"{doc['metadata']['name']}-head-svc"}
    for _, doc in d.of("RayCluster"):
        services.add(f"{doc['metadata']['name']}-head-svc")
    texts = dict(d.texts) | {"Dockerfile": d.dockerfile, "infra/serve_config.yaml": SERVE_CONFIG.read_text()}
    for fname, text in texts.items():
        comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        for svc in re.findall(r"svc/([a-z0-9-]+)", comments):
            if svc not in services:
                out.append(f"comments: {fname} names the Service {svc}; KubeRay creates {sorted(services)}")
        for ref, name in re.findall(r"([\w/]+\.py) ([A-Z][A-Z0-9_]+)\b", comments):
            path = REPO / ref
            if not path.exists() or not _defines(path, name):
                out.append(f"comments: {fname} points to {ref} {name}, which is not defined there")
        for ref in re.findall(r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.(?:py|yaml|md))\b", comments):
            if not (REPO / ref).exists() and not (d.folder / ref).exists():
                out.append(f"comments: {fname} names {ref}, which does not exist")
        for ref in re.findall(r"(?<![\w/.*-])([\w.*-]+\.json)\b", comments):  # a measured figure's JSON
            if not list(GPU_RESULTS.glob(ref)):
                out.append(f"comments: {fname} cites {ref}, which is not in docs/results/gpu/")
    return out


def check_images(d: Deploy) -> list[str]:
    out = []
    k = d.kustomization
    if k is None:
        return ["images: no kustomization.yaml, so no setting for the registry: the images are bare names"]
    mapped = {i["name"]: i for i in k.get("images", [])}
    for name, doc in d.of("RayCluster") + d.of("RayService"):
        for gname, g in groups(cluster_spec(doc)):
            image = ray_container(g)["image"].rsplit(":", 1)[0]
            entry = mapped.get(image)
            if entry is None or "/" not in entry.get("newName", ""):
                out.append(f"images: {name} {gname}: image {image} has no registry setting in kustomization.yaml")
    listed = set(k.get("resources", []))
    for fname in sorted({n for n, doc in d.docs if doc["kind"] != "RayJob"} - listed):
        out.append(f"images: {fname} is not in kustomization.yaml resources")
    # a first deploy applies all but the RayService (`-l app.kubernetes.io/component!=serve`), which needs a checkpoint
    for fname, doc in d.docs:
        serve = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "serve"
        if serve != (doc["kind"] == "RayService"):
            out.append(f"images: {fname}: the label app.kubernetes.io/component=serve must be on the RayService alone")
    return out


def check_versions(d: Deploy) -> list[str]:
    lock = re.search(r"^ray==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    out = [f"versions: {name}: rayVersion {cluster_spec(doc).get('rayVersion')} != the lock's ray {lock}"
           for name, doc in d.of("RayCluster") + d.of("RayService") if cluster_spec(doc).get("rayVersion") != lock]
    bases = re.findall(r"rayproject/ray:([\d.]+)-py(\d+)", d.dockerfile)
    if not bases or any(v != lock or py != "311" for v, py in bases):
        out.append(f"versions: the Dockerfile's Ray images {bases} are not Ray {lock} on Python 3.11")
    return out


DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_kuberay_validation(d: Deploy) -> list[str]:
    out = []
    for name, doc in d.of("RayCluster") + d.of("RayService") + d.of("RayJob"):
        meta = doc["metadata"]["name"]
        if len(meta) > 63 or not DNS1035.match(meta):
            out.append(f"kuberay-validation: {name}: name {meta!r} is not a DNS-1035 label")
    for name, doc in d.of("RayCluster") + d.of("RayService"):
        for gname, g in groups(cluster_spec(doc)):
            params = g.get("rayStartParams", {})
            if not g["template"]["spec"].get("containers"):
                out.append(f"kuberay-validation: {name} {gname}: no container")
            if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and g.get("resources"):
                out.append(f"kuberay-validation: {name} {gname}: resources in both rayStartParams and resources")
            if "labels" in params:
                out.append(f"kuberay-validation: {name} {gname}: rayStartParams['labels'] is not supported")
            lo, hi, n = g.get("minReplicas", 0), g.get("maxReplicas", 0), g.get("replicas", g.get("minReplicas", 0))
            if gname != "head" and not lo <= n <= hi:
                out.append(f"kuberay-validation: {name} {gname}: replicas {n} outside [{lo}, {hi}]")
    for name, job in d.of("RayJob"):
        s = job["spec"]
        if "clusterSelector" in s:
            if not s["clusterSelector"].get("ray.io/cluster"):
                out.append(f"kuberay-validation: {name}: cluster name in clusterSelector is empty")
            if s.get("submissionMode") == "SidecarMode":
                out.append(f"kuberay-validation: {name}: clusterSelector is not supported in SidecarMode")
        elif "rayClusterSpec" not in s:
            out.append(f"kuberay-validation: {name}: one of rayClusterSpec or clusterSelector must be set")
        if not s.get("shutdownAfterJobFinishes") and s.get("ttlSecondsAfterFinished", 0) > 0:
            out.append(f"kuberay-validation: {name}: ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
        if not isinstance(yaml.safe_load(s.get("runtimeEnvYAML") or "{}"), dict):
            out.append(f"kuberay-validation: {name}: runtimeEnvYAML is not a YAML mapping")
    for name, svc in d.of("RayService"):
        if (cluster_spec(svc)["headGroupSpec"].get("headService") or {}).get("metadata", {}).get("name"):
            out.append(f"kuberay-validation: {name}: headService.metadata.name should not be set")
    return out


def check_dockerfile(d: Deploy) -> list[str]:
    out = []
    lines = [ln.strip() for ln in d.dockerfile.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    users = [i for i, ln in enumerate(lines) if ln.startswith("USER ")]
    first_run = next((i for i, ln in enumerate(lines) if ln.startswith("RUN ")), len(lines))
    if not users or lines[users[-1]] != "USER ray" or users[0] > first_run:
        out.append("dockerfile: pip must run as the base image's user `ray` (USER ray before the first RUN)")
    for ln in lines:
        if ln.startswith(("COPY ", "ADD ")) and "--chown=ray" not in ln:
            out.append(f"dockerfile: `{ln}` leaves root-owned files for the ray user (COPY --chown=ray:users)")
    if not any(ln.startswith("RUN ") and "pip install" in ln and " -e ." in ln for ln in lines):
        out.append("dockerfile: the project is not installed editable: oneloc.paths.REPO_ROOT would be site-packages "
                   "(data/ and infra/*.yaml are read from it)")
    if "-gpu" not in d.dockerfile:
        out.append("dockerfile: no CUDA build for the GPU pods (RAY_IMAGE=rayproject/ray:<version>-py311-gpu)")
    return out


CHECKS = [check_head_ports, check_gpu_reach, check_gpu_nodes, check_gpu_measured, check_storage, check_serve_config,
          check_deprecated, check_comments, check_images, check_versions, check_kuberay_validation, check_dockerfile]


def problems(d: Deploy) -> list[str]:
    return [p for check in CHECKS for p in check(d)]


def deploy() -> Deploy:
    return Deploy.load(KUBERAY, REPO / "infra" / "docker" / "Dockerfile")


# -- the manifests pass; the ones before issue 18 fail for the issue's reasons -------------------------------------

def test_the_manifests_pass_every_check():
    assert problems(deploy()) == []


def test_the_manifests_before_issue_18_fail_for_the_reasons_it_lists():
    found = problems(Deploy.load(BEFORE, BEFORE / "Dockerfile"))
    text = "\n".join(found)
    expected = [  # issue 18, in its order
        "head-ports: rayservice.yaml: the head declares ports ['serve'] but not dashboard:8265",
        "gpu-reach: rayjob-train.yaml: `oneloc train` waits for 4 GPU workers; cluster oneloc can hold 0",
        "gpu-reach: rayjob-rl.yaml: `oneloc rl` waits for 4 GPU workers",
        "gpu-nodes: raycluster.yaml gpu: no toleration",
        "storage: the PersistentVolumeClaim oneloc-checkpoints is mounted but defined nowhere",
        "storage: storage.checkpoints is s3://oneloc-prod/state/checkpoints, an object-store URI",
        "storage: storage.reports is s3://oneloc-prod/state/reports",
        "deprecated: rayservice.yaml: deploymentUnhealthySecondThreshold",
        "deprecated: rayservice.yaml: serviceUnhealthySecondThreshold",
        "comments: rayservice.yaml names the Service oneloc-serve-svc",
        "serve-config: rayservice.yaml: serveConfigV2 differs from infra/serve_config.yaml at logging_config",
        "comments: rayservice.yaml points to serving/app.py SERVE_ENV",
        "images: no kustomization.yaml, so no setting for the registry: the images are bare names",
        "gpu-nodes: raycluster.yaml gpu: image oneloc-ray is not the CUDA build",
        "dockerfile: `COPY . .` leaves root-owned files",
        "dockerfile: pip must run as the base image's user `ray`",
    ]
    missing = [e for e in expected if e not in text]
    assert missing == [], text


def _mutated(edit) -> list[str]:
    d = deploy()
    d.docs = copy.deepcopy(d.docs)
    edit({n: doc for n, doc in d.docs}, d)
    return problems(d)


def _svc(docs):
    return docs["rayservice.yaml"]["spec"]


def _rc(docs):
    return docs["raycluster.yaml"]["spec"]


def _serve_conf(docs, edit):
    conf = yaml.safe_load(_svc(docs)["serveConfigV2"])
    edit(conf)
    _svc(docs)["serveConfigV2"] = yaml.safe_dump(conf)


def _serve_overrides(docs, values: dict) -> None:
    """The RayService application's `serve.KEY=VALUE` overrides with ``values`` put in (replacing the same keys)."""
    def edit(conf):
        args = conf["applications"][0]["args"]
        keep = [o for o in args["overrides"] if o.split("=")[0] not in values]
        args["overrides"] = keep + [f"{k}={v}" for k, v in values.items()]
    _serve_conf(docs, edit)


def _serve_on_gpus(docs, **change) -> None:
    """The switch to GPU model replicas as docs/OPERATIONS.md "GPU sizing" gives it: the measured settings
    (``change`` altering some) and serve-gpu pods."""
    want = {f"serve.{k}": v for k, v in (measured_serve() | change).items() if k in SERVE_GPU_KEYS}
    _serve_overrides(docs, want)
    _svc(docs)["rayClusterConfig"]["workerGroupSpecs"][1].update(minReplicas=1, maxReplicas=2, replicas=1)


def _runtime_env(docs, fname, edit):
    spec = docs[fname]["spec"]
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    edit(env["env_vars"])
    spec["runtimeEnvYAML"] = yaml.safe_dump(env)


def _gpu_pod(docs, resources):
    res = _rc(docs)["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]
    res["limits"].update(resources)
    res["requests"].update(resources)


def _configmap(docs, old, new):
    cm = docs["configmap.yaml"]["data"]
    assert old in cm["oneloc.yaml"]
    cm["oneloc.yaml"] = cm["oneloc.yaml"].replace(old, new)


@pytest.mark.parametrize("edit,expected", [
    (lambda docs, d: _svc(docs)["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"].pop(1),
     "head-ports: rayservice.yaml: the head declares ports ['client', 'gcs-server', 'metrics', 'serve'] but not dashboard"),
    (lambda docs, d: _rc(docs).update(enableInTreeAutoscaling=False),
     "gpu-reach: rayjob-train.yaml: `oneloc train` waits for 2 GPU workers; cluster oneloc can hold 0"),
    (lambda docs, d: _rc(docs)["workerGroupSpecs"][1].update(maxReplicas=0), "can hold 0 (gpu: 0 pods x 2"),
    (lambda docs, d: _configmap(docs, "cpus_per_worker: 0.5", "cpus_per_worker: 16"), "can hold 0"),
    (lambda docs, d: _serve_conf(docs, lambda c: c["applications"][0]["args"]["overrides"].append("serve.num_gpus=0.5")),
     "gpu-reach: rayservice.yaml: serve.num_gpus=0.5 x serve.min_replicas=2 replicas, the cluster can hold 0"),
    (lambda docs, d: _rc(docs)["workerGroupSpecs"][1]["template"]["spec"].pop("tolerations"),
     "gpu-nodes: raycluster.yaml gpu: no toleration"),
    (lambda docs, d: _configmap(docs, '"/mnt/oneloc/checkpoints"', '"checkpoints"'),
     "storage: storage.checkpoints is s3://oneloc-prod/state/checkpoints, an object-store URI"),
    (lambda docs, d: _svc(docs)["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["volumes"][1].update(
        persistentVolumeClaim={"claimName": "oneloc-checkpoints-serve"}),
     "storage: the PersistentVolumeClaim oneloc-checkpoints-serve is mounted but defined nowhere"),
    (lambda docs, d: _serve_conf(docs, lambda c: c["applications"][0]["args"].update(checkpoint="/mnt/oneloc/other")),
     "storage: rayservice.yaml head: Serve reads /mnt/oneloc/other"),
    (lambda docs, d: _rc(docs)["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["volumeMounts"][1].update(
        readOnly=True), "storage: raycluster.yaml gpu: storage.checkpoints /mnt/oneloc/checkpoints is mounted read-only"),
    (lambda docs, d: docs["pvc-checkpoints.yaml"]["spec"].update(accessModes=["ReadWriteOnce"]), "is not ReadWriteMany"),
    (lambda docs, d: _serve_conf(docs, lambda c: c.pop("logging_config")),
     "serve-config: rayservice.yaml: serveConfigV2 differs from infra/serve_config.yaml at logging_config"),
    (lambda docs, d: _serve_conf(docs, lambda c: c["applications"][0].update(import_path="build_app")),
     "ServeDeploySchema refuses"),
    (lambda docs, d: _svc(docs).update(serviceUnhealthySecondThreshold=900), "deprecated: rayservice.yaml"),
    (lambda docs, d: d.texts.update({"x.yaml": "# kubectl port-forward svc/oneloc-serve-svc 8000"}),
     "comments: x.yaml names the Service oneloc-serve-svc"),
    (lambda docs, d: d.texts.update({"x.yaml": "# the settings of serving/app.py SERVE_ENV"}),
     "comments: x.yaml points to serving/app.py SERVE_ENV"),
    (lambda docs, d: _rc(docs)["headGroupSpec"]["template"]["spec"]["containers"][0].update(image="oneloc-raay:0.1.0"),
     "images: raycluster.yaml head: image oneloc-raay has no registry setting"),
    (lambda docs, d: docs["rayservice.yaml"]["metadata"].pop("labels"),
     "images: rayservice.yaml: the label app.kubernetes.io/component=serve must be on the RayService alone"),
    (lambda docs, d: _rc(docs).update(rayVersion="2.59.0"), "versions: raycluster.yaml: rayVersion 2.59.0"),
    (lambda docs, d: _rc(docs)["workerGroupSpecs"][0].update(replicas=9), "replicas 9 outside [1, 8]"),
    (lambda docs, d: setattr(d, "dockerfile", d.dockerfile.replace("COPY --chown=ray:users . .", "COPY . .")),
     "dockerfile: `COPY . .` leaves root-owned files"),
    (lambda docs, d: setattr(d, "dockerfile", d.dockerfile.replace(" -e .", " .")), "not installed editable"),
    # the measured GPU settings (docs/results/gpu/), one at a time
    (lambda docs, d: _configmap(docs, "batch_size: 1024", "batch_size: 128"),
     "gpu-measured: rayjob-train.yaml: train.batch_size 128, measured best per GPU: 1024"),
    (lambda docs, d: docs["rayjob-train.yaml"]["spec"].update(
        entrypoint="oneloc --set train.batch_size=512 train --address auto --workers 2 --gpu --resume"),
     "gpu-measured: rayjob-train.yaml: train.batch_size 512"),
    (lambda docs, d: _configmap(docs, "feed: device", "feed: stream"), "gpu-measured: rayjob-rl.yaml: train.feed stream"),
    (lambda docs, d: _configmap(docs, "feed: device", ""), "the ConfigMap does not set train.feed itself"),
    (lambda docs, d: _runtime_env(docs, "rayjob-rl.yaml", lambda env: env.pop("NCCL_NVLS_ENABLE")),
     "gpu-measured: rayjob-rl.yaml: runtime env NCCL_NVLS_ENABLE=None, the measured runs had NCCL_NVLS_ENABLE=0"),
    (lambda docs, d: _runtime_env(docs, "rayjob-train.yaml", lambda env: env.update(TORCH_SYMM_MEM_DISABLE_MULTICAST="0")),
     "gpu-measured: rayjob-train.yaml: runtime env TORCH_SYMM_MEM_DISABLE_MULTICAST=0"),
    (lambda docs, d: _gpu_pod(docs, {GPU: "1"}), "gpu-measured: rayjob-train.yaml: 2 workers on pods of 1 GPU"),
    (lambda docs, d: _gpu_pod(docs, {"memory": "16Gi"}), "gpu-measured: raycluster.yaml gpu: 8 CPUs, 16Gi for 2 GPUs"),
    (lambda docs, d: _gpu_pod(docs, {"cpu": "4"}), "gpu-measured: raycluster.yaml gpu: 4 CPUs"),
    (lambda docs, d: _rc(docs)["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]["requests"]
     .update(cpu="2"), "gpu-measured: raycluster.yaml gpu: requests"),
    (lambda docs, d: _svc(docs)["rayClusterConfig"]["workerGroupSpecs"][1].update(minReplicas=1, maxReplicas=1,
                                                                                   replicas=1),
     "gpu-measured: rayservice.yaml serve-gpu: GPU pods while serve.num_gpus=0.0"),
    (lambda docs, d: _serve_on_gpus(docs, max_batch_size=2 * measured_serve()["max_batch_size"]),
     "gpu-measured: rayservice.yaml: serve.max_batch_size"),
    (lambda docs, d: _serve_on_gpus(docs, batch_wait_timeout_s=measured_serve()["batch_wait_timeout_s"] + 0.01),
     "gpu-measured: rayservice.yaml: serve.batch_wait_timeout_s"),
    (lambda docs, d: _serve_on_gpus(docs, num_gpus=1.5 * measured_serve()["num_gpus"]),
     "gpu-measured: rayservice.yaml: serve.num_gpus"),
    (lambda docs, d: d.texts.update({"x.yaml": "# 99x faster (bench-train-b4096.json)"}),
     "comments: x.yaml cites bench-train-b4096.json, which is not in docs/results/gpu/"),
])
def test_each_defect_alone_is_caught(edit, expected):
    found = _mutated(edit)
    assert any(expected in p for p in found), found


def test_serving_on_gpus_with_the_measured_settings_passes():
    """The documented switch to GPU model replicas (the measured batching, serve-gpu pods) deploys cleanly."""
    found = _mutated(lambda docs, d: _serve_on_gpus(docs))
    assert not [p for p in found if p.startswith("gpu-")], found


def test_gpus_per_train_worker_is_what_the_trainer_asks_for():
    src = (REPO / "ray_jobs" / "train.py").read_text()
    assert f'{{"GPU": {GPUS_PER_TRAIN_WORKER}}} if t.use_gpu' in src


def test_the_gpu_jobs_are_gpu_jobs_with_bf16():
    """train and rl run with --gpu, which is what turns on one GPU per worker, NCCL and bf16 autocast."""
    for name, job in deploy().of("RayJob"):
        command, args = parse_cli(shlex.split(job["spec"]["entrypoint"]))
        assert getattr(args, "gpu", False) is (command in ("train", "rl")), name
    src = (REPO / "ray_jobs" / "train_loop.py").read_text()
    assert 'torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda"' in src


def test_the_measured_settings_are_read_from_the_results():
    assert measured_batch() == 1024  # bench-train-b1024.json: 2 GPUs 1.79x one, Ray 1.00x the plain loop
    assert measured_env() == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                              "NVSHMEM_DISABLE_NVLS": "1"}


def test_serve_on_gpu_stays_off_until_measured():
    """Issue 15 item 4 (Serve on a GPU replica, HTTP figures) is not measured: no GPU share, no GPU pods."""
    d = deploy()
    _, app = d.serve_app()
    assert d.config(app["args"]["overrides"]).serve.num_gpus == 0
    (_, svc), = d.of("RayService")
    gpu = [g for _, g in groups(cluster_spec(svc))[1:]
           if quantity(ray_container(g)["resources"]["limits"].get(GPU, 0)) > 0]
    assert gpu and all(g["maxReplicas"] == 0 for g in gpu)


def test_documented_overrides_are_in_the_operations_guide():
    ops = (REPO / "docs" / "OPERATIONS.md").read_text()
    for path in DOCUMENTED_OVERRIDES:
        assert f"`{path}`" in ops, path


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not installed")
def test_kustomize_puts_the_registry_on_every_image():
    out = subprocess.run(["kubectl", "kustomize", str(KUBERAY)], capture_output=True, text=True, check=True).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    k = deploy().kustomization
    registry = {i["newName"] + ":" + i["newTag"] for i in k["images"]}
    images = [ray_container(g)["image"] for d in rendered if d["kind"] in ("RayCluster", "RayService")
              for _, g in groups(cluster_spec(d))]
    assert len(images) == 6 and set(images) == registry, images
    assert sorted(d["kind"] for d in rendered) == ["ConfigMap", "PersistentVolumeClaim", "RayCluster", "RayService"]
    assert [d for d in rendered if d["kind"] == "RayService"][0]["spec"]["serveConfigV2"] == \
        _svc({n: doc for n, doc in deploy().docs})["serveConfigV2"]  # the YAML string is passed through as is
