"""`oneloc bench scale [--sizes 1,10] [--events RECORDS_PER_BATCH]`: how the ingest driver's costs grow
with the data, on the seeded synthetic city (streaming/synthetic.py) at NYC-like sizes.

Size s = ``1000 s`` users, ``5000 s`` places, 60 days at 2.5 visits per user-day (1x: ~150k visits,
i.e. ~300k location + order records plus the catalog, like the NYC replay; 10x: ~3M records). Per size,
in this process, without Kafka and Ray (their per-record costs, read + decode in parallel tasks, are
``oneloc bench ingest``'s; what can grow with the data is the driver's state, measured here):

1. generate + encode: the generator's records, each encoded with the project's Avro codec (what the
   producer sends); records/s. Sending them to Kafka is ``oneloc bench produce`` (per record, flat).
2. decode: the ingest's ``RecordDecoder`` over each batch of raw records (one thread); records/s.
3. ingest driver: ``BatchWriter.apply`` (streaming/ingest_batch.py: every Delta commit, the index, the
   samples and the per-user sample state) per micro-batch of ``--events`` records (default 40,000);
   records/s and the per-batch seconds (median, p90, last) as the tables grow.
4. sample state: bytes written per batch to ``sample_state`` (the data files of its commits) next to
   the users that batch touched, and the old one-row design's bytes per batch (the whole builder
   pickled, what it rewrote every batch: measured every 10th batch).
5. maintenance: every table's files (active, and on disk) before and after one compaction + vacuum at
   the end (retention 0).

Writes the JSON (``--out``, default docs/results/scale/bench-scale.json) and a PNG beside it.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from oneloc.config import OneLocConfig

ROLES = ("poi-catalog", "user-locations", "orders")


def _state_bytes(uri: str, seen: int) -> tuple[int, int]:
    """(bytes of the data files the commits after version ``seen`` added, the newest version)."""
    import json

    log = Path(uri) / "_delta_log"
    vs = sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())
    total = 0
    for v in (v for v in vs if v > seen):
        for line in (log / f"{v:020d}.json").read_text().splitlines():
            if '"add"' in line:
                total += json.loads(line)["add"]["size"]
    return total, (vs[-1] if vs else seen)


def run_size(cfg: OneLocConfig, size: float, batch: int, root: Path, seed: int = 0) -> dict:
    from oneloc.schemas import registry
    from oneloc.streaming.decoder import RecordDecoder
    from oneloc.streaming.ingest_batch import BatchWriter, covered_offsets
    from oneloc.streaming.shards import STATE
    from oneloc.streaming.synthetic import CITIES, iter_city_events

    cfg = cfg.model_copy(deep=True)
    cfg.storage.root = str(root)
    cfg.ingest.maintenance_every = 0          # once at the end, measured on its own
    cfg.ingest.vacuum_retention_hours = 0
    users, places, days = int(1000 * size), int(5000 * size), 60
    writer = BatchWriter(cfg, {r: [(r, 0)] for r in ROLES})
    decoder = RecordDecoder({r: s for r, s in zip(ROLES, ("Poi", "UserLocation", "Order"), strict=True)})
    reg = registry()
    events = iter_city_events(CITIES["lisbon"], n_pois=places, n_users=users, days=days, seed=seed,
                              end_ms=1_767_225_600_000)
    offsets = dict.fromkeys(ROLES, 0)
    t_gen = t_dec = t_apply = 0.0
    n_records = n_batches = 0
    per_batch, state_new, state_old, touched = [], [], [], []
    state_uri, seen = cfg.storage.table(STATE), -1
    done = False
    while not done:
        t0 = time.perf_counter()
        cols = {"topic": [], "partition": [], "offset": [], "key": [], "value": []}
        for role, key, schema, rec in events:
            cols["topic"].append(role)
            cols["partition"].append(0)
            cols["offset"].append(offsets[role])
            offsets[role] += 1
            cols["key"].append(key.encode())
            cols["value"].append(reg.encode(schema, rec))
            if len(cols["value"]) >= batch:
                break
        else:
            done = True
        if not cols["value"]:
            break
        raw = pa.table({"topic": pa.array(cols["topic"], pa.string()),
                        "partition": pa.array(cols["partition"], pa.int32()),
                        "offset": pa.array(cols["offset"], pa.int64()), "key": pa.array(cols["key"], pa.binary()),
                        "value": pa.array(cols["value"], pa.binary())})
        t1 = time.perf_counter()
        decoded = decoder(raw)
        t2 = time.perf_counter()
        writer.apply(decoded, covered_offsets(raw))
        writer.wait_samples()  # the batch's samples (the job overlaps them with the next batch)
        t3 = time.perf_counter()
        t_gen, t_dec, t_apply = t_gen + t1 - t0, t_dec + t2 - t1, t_apply + t3 - t2
        n_records += raw.num_rows
        n_batches += 1
        per_batch.append(t3 - t2)
        b, seen = _state_bytes(state_uri, seen)
        state_new.append(b)
        orders = decoded.filter(pa.compute.equal(decoded["schema"], "Order"))
        touched.append(len(pa.compute.unique(orders["user_id"])))
        if n_batches % 10 == 0 or done:
            sw = writer.shards
            state_old.append(len(pickle.dumps({"builder": sw.builder, "ids": sw.ids.ids})))
    t0 = time.perf_counter()
    maint = writer.maintain()
    t_maint = time.perf_counter() - t0
    writer.close()
    pb = np.array(per_batch)
    event_batches = [i for i, t in enumerate(touched) if t > 0]
    sn = np.array([state_new[i] for i in event_batches])
    tu = np.array([touched[i] for i in event_batches])
    return {
        "size": size, "users": users, "places": places, "days": days, "records": n_records, "batches": n_batches,
        "records_per_batch": batch,
        "generate_encode_records_per_s": round(n_records / t_gen),
        "decode_records_per_s": round(n_records / t_dec),
        "ingest_driver_records_per_s": round(n_records / t_apply),
        "ingest_driver_us_per_record": round(1e6 * t_apply / n_records, 2),
        "batch_s": {"median": round(float(np.median(pb)), 3), "p90": round(float(np.quantile(pb, 0.9)), 3),
                    "first": round(float(pb[0]), 3), "last": round(float(pb[-1]), 3)},
        "batch_s_each": [round(float(x), 3) for x in pb],
        "sample_state": {
            "users_touched_per_batch_median": int(np.median(tu)) if len(tu) else 0,
            "bytes_per_batch_median": int(np.median(sn)) if len(sn) else 0,
            "bytes_per_touched_user_median": round(float(np.median(sn / np.maximum(tu, 1))), 1) if len(sn) else 0,
            "bytes_per_batch_each": state_new,
            "users_touched_each": touched,
            "one_row_design_bytes_per_batch_sampled": state_old,
            "one_row_design_bytes_per_batch_last": state_old[-1] if state_old else 0,
        },
        "maintenance": {"seconds": round(t_maint, 2), "tables": maint},
        "seconds": {"generate_encode": round(t_gen, 1), "decode": round(t_dec, 1), "ingest_driver": round(t_apply, 1)},
    }


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    sizes = [r["size"] for r in runs]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label in (("generate_encode_records_per_s", "generate + encode"), ("decode_records_per_s", "decode"),
                       ("ingest_driver_records_per_s", "ingest driver (Delta, index, samples)")):
        ax[0].plot(sizes, [r[key] for r in runs], "o-", label=label)
    ax[0].set(xscale="log", xlabel="size (x NYC)", ylabel="records/s (one process)", title="throughput per stage")
    ax[0].legend(fontsize=8)
    for r in runs:
        ax[1].plot(range(1, len(r["batch_s_each"]) + 1), r["batch_s_each"], ".", label=f"{r['size']}x")
    ax[1].set(xlabel="micro-batch number", ylabel="seconds", title=f"driver time per batch "
              f"({runs[0]['records_per_batch']:,} records)")
    ax[1].legend(fontsize=8)
    st = [r["sample_state"] for r in runs]
    ax[2].plot(sizes, [x["bytes_per_batch_median"] for x in st], "o-", label="per-user state: bytes per batch")
    ax[2].plot(sizes, [x["one_row_design_bytes_per_batch_last"] for x in st], "s--",
               label="one-row design: bytes per batch (whole builder)")
    ax[2].plot(sizes, [x["bytes_per_touched_user_median"] for x in st], "o-", label="per-user state: bytes per user touched")
    ax[2].plot(sizes, [x["one_row_design_bytes_per_batch_last"] / max(1, x["users_touched_per_batch_median"])
                       for x in st], "s--", label="one-row design: bytes per user touched")
    ax[2].set(xscale="log", yscale="log", xlabel="size (x NYC)", ylabel="bytes", title="sample state written per batch")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(cfg: OneLocConfig, args) -> dict:
    sizes = [float(s) for s in (args.sizes if args.sizes != "default" else "1,10").split(",")]
    batch = args.events or 40_000
    runs = []
    for s in sizes:
        with tempfile.TemporaryDirectory(prefix=f"oneloc-scale-{s}x-") as d:
            runs.append(run_size(cfg, s, batch, Path(d)))
    out = {"benchmark": "scale", "sizes": sizes, "runs": runs,
           "notes": "one process, no Kafka/Ray (their per-record costs: bench produce / bench ingest); "
                    "shared 2-core VM, other jobs running"}
    target = args.out or "docs/results/scale/bench-scale.json"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    plot(out, str(Path(target).with_suffix(".png")))
    args.out = target
    return out
