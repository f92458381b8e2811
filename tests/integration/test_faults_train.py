"""SIGKILL of the trainer mid-work: `oneloc train` (tiny model, a few hundred samples in a Delta samples
table, 5 epochs, a checkpoint each epoch) runs as a subprocess with its own local Ray (its own RAY_TMPDIR,
its own session and process group). As soon as the first checkpoint is on storage the whole process
group is SIGKILLed (driver, GCS, raylet, Train workers); no process of that Ray may survive. Then
`oneloc train --resume` continues from that checkpoint: the epochs go on from 2, the summary's history
holds the resumed epochs, and the run finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from oneloc.config import load_config
from oneloc.model.checkpoint import load_checkpoint
from oneloc.ray_jobs.train import latest_checkpoint
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.samples import build_samples
from tests.integration.fixtures_delta import write_samples_and_pois

pytestmark = pytest.mark.integration
EPOCHS = 5   # a few epochs of ~1 s each: the kill (polled every 0.1 s) lands with epochs left
RUN = "fault-train"


def write_samples(cfg, users: int = 40, n_train: int = 320) -> int:
    """Small Delta "samples" and "pois" tables (as ingestion writes them): ``n_train`` training rows, the
    users' validation rows; -> the number of training rows."""
    c = load_checkins()
    c = c[c["user_id"].isin(sorted(c["user_id"].unique())[:users])]
    s = build_samples(c, cfg.shards)
    train = s[s["split"] == "train"].iloc[:n_train]
    write_samples_and_pois(cfg, {"train": train, "val": s[s["split"] == "val"]}, c)
    return len(train)


def processes(marker: str, pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes of one trainer's Ray: in its process group, or naming
    ``marker`` (its RAY_TMPDIR) in their command line or environment (workers retitle themselves)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (p / "environ").read_bytes()
        except OSError:
            continue
        if stat[0] != "Z" and (int(stat[2]) == pgid or marker in cmd or marker.encode() in env):
            out.append((int(p.name), cmd[:120]))
    return out


def gone(marker: str, pgid: int, timeout_s: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout_s
    while (left := processes(marker, pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    """The command in a new session (its own process group: it and every Ray process it starts)."""
    with open(log, "w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.timeout(320)
def test_trainer_sigkilled_after_first_checkpoint_resumes_and_finishes(tmp_path):
    overrides = [f"storage.root={tmp_path / 'state'}", "model.size=tiny", "model.tokenizer.codebook_size=8",
                 "train.source=delta", "shards.policy=cutoffs", "train.workers=2", "train.batch_size=32", "train.val_samples=24",
                 "train.log_every=0", "train.warmup_steps=2", "train.patience=10", f"train.epochs={EPOCHS}",
                 f"train.run_name={RUN}", "ray.num_cpus=2"]
    cfg = load_config(overrides=overrides)
    n_train = write_samples(cfg)
    ray_tmp = tempfile.mkdtemp(prefix="rft", dir="/tmp")  # short: Ray's unix sockets live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    argv = [sys.executable, "-m", "oneloc.cli", *sum((["--set", o] for o in overrides), []), "train"]
    summary_path = Path(cfg.storage.path(cfg.storage.checkpoints)) / f"{RUN}.json"

    t0 = time.monotonic()
    proc = start(argv, env, tmp_path / "first.log")
    try:
        while (ckpt := latest_checkpoint(cfg, RUN)) is None or not Path(ckpt, "model.pt").exists():
            assert proc.poll() is None, f"the trainer exited early:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
            assert time.monotonic() - t0 < 120, "no checkpoint within 120 s"
            time.sleep(0.1)
        alive = processes(ray_tmp, proc.pid)
        kill_group(proc)
        killed_at = time.monotonic() - t0
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        kill_group(proc)
    assert any("raylet" in c for _, c in alive) and any("gcs_server" in c for _, c in alive), alive
    assert len([c for _, c in alive if c.startswith("ray::")]) >= 2, alive  # the Train workers
    left = gone(ray_tmp, proc.pid, 15)
    assert not left, f"processes of the killed trainer's Ray survived: {left}"
    assert not summary_path.exists()  # it was killed mid-run
    first = Path(latest_checkpoint(cfg, RUN))
    ckpts_at_kill = sorted(p.parent.name for p in first.parent.glob("checkpoint_*/model.pt"))
    actors = sorted(c.split()[0] for _, c in alive if c.startswith("ray::"))
    print(f"SIGKILL at {killed_at:.1f}s after {ckpts_at_kill}: {len(alive)} processes (raylet, gcs_server, {actors})"
          " all gone")

    t1 = time.monotonic()
    proc = start([*argv, "--resume"], env, tmp_path / "resumed.log")
    try:
        rc = proc.wait(150)
        left = gone(ray_tmp, proc.pid, 15)  # before the group kill below, which would hide them
    finally:
        kill_group(proc)
    assert rc == 0, (tmp_path / "resumed.log").read_text()[-4000:]
    assert not left, f"the resumed trainer left Ray processes behind: {left}"
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from"] is not None and Path(summary["resumed_from"]).name in ckpts_at_kill
    resumed_at = load_checkpoint(Path(summary["resumed_from"]) / "model.pt")[3]["epoch"]
    assert resumed_at >= 1  # the resumed run started at epoch resumed_at + 1, not at 1
    if resumed_at < EPOCHS:
        new_epochs = sorted(load_checkpoint(m)[3]["epoch"]
                            for m in Path(summary["latest_checkpoint"]).parent.parent.glob("checkpoint_*/model.pt"))
        assert new_epochs == list(range(resumed_at + 1, EPOCHS + 1)), (resumed_at, new_epochs)
    else:  # the kill came after the last epoch's checkpoint (a slow poll): resume has nothing left, and says so
        assert summary["latest_checkpoint"] == f"{summary['resumed_from']}/model.pt"
    epochs, steps = [h["epoch"] for h in summary["history"]], [h["step"] for h in summary["history"]]
    assert epochs == list(range(1, EPOCHS + 1))  # the epochs before the kill, then the resumed ones
    per_epoch = -(-n_train // (32 * 2))
    assert steps == [per_epoch * e for e in epochs]  # the step count continued, not restarted
    print(f"resumed from epoch {resumed_at} in {time.monotonic() - t1:.1f}s: epochs {epochs}, steps {steps}")

    # resuming a run whose last epoch is checkpointed: nothing to train, a clean exit, the same history
    proc = start([*argv, "--resume"], env, tmp_path / "again.log")
    try:
        rc = proc.wait(120)
    finally:
        kill_group(proc)
    assert rc == 0, (tmp_path / "again.log").read_text()[-4000:]
    again = json.loads(summary_path.read_text())
    assert load_checkpoint(Path(again["resumed_from"]) / "model.pt")[3]["epoch"] == EPOCHS
    assert again["latest_checkpoint"] == f"{again['resumed_from']}/model.pt"
    assert [h["epoch"] for h in again["history"]] == epochs
    shutil.rmtree(ray_tmp, ignore_errors=True)  # kept when the test fails: the Ray logs
