"""New places at a replica's start: ``serving.catalog.served_catalog`` (semantic IDs for the catalog's places
that the checkpoint's tokenizer lacks, ``model/new_places.add_places``) on a trained checkpoint and the Delta
catalog of a run, e.g. the scale bench's state (docs/results/scale/README.md):

    python -m oneloc.benchmarks.bench_new_places --config /tmp/h17-scale/100x/config.yaml \\
        --checkpoint /tmp/h17-scale/100x/state/checkpoints/<run>/<checkpoint>/model.pt [--codes-out codes.npy]

Prints one JSON line: wall and CPU seconds, places fitted / new / left, the distinct prefixes, (cell, category)
groups and cells of the new places. ``--codes-out`` saves the resulting ID table, to compare two versions.
"""

from __future__ import annotations

import argparse
import json
import time

import h3
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--codes-out", default="")
    a = p.parse_args()
    from oneloc.config import load_config
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.serving.catalog import served_catalog
    from oneloc.streaming.catalog import read_catalog

    cfg = load_config(a.config, [])
    _, tok, _, _ = load_checkpoint(a.checkpoint)
    catalog = read_catalog(cfg)
    known = {str(x) for x in tok.poi_ids.tolist()}
    new = [i for i, x in enumerate(catalog.poi_id.tolist()) if str(x) not in known and catalog.active[i]]
    cells = [h3.latlng_to_cell(float(catalog.lat[i]), float(catalog.lng[i]), tok.h3_resolution) for i in new]
    t, c = time.perf_counter(), time.process_time()
    out = served_catalog(tok, cfg.model, catalog, cfg.serve.area_margin_km)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    if a.codes_out:
        np.save(a.codes_out, out.tok.codes)
    print(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "fitted_places": int(tok.num_items),
                      "catalog_places": len(catalog.poi_id), "new_places": len(new), "added": out.added,
                      "left": len(out.left), "prefixes": int(len(np.unique(tok.codes[:, :-1], axis=0))),
                      "new_cells": len(set(cells)),
                      "new_cell_category_groups": len({(x, catalog.category_key[i])
                                                       for x, i in zip(cells, new, strict=True)})}))


if __name__ == "__main__":
    main()
