"""`oneloc serve`: start a local Ray (no dashboard), run the Serve application on 127.0.0.1, print the URL
and block until Ctrl-C.

    oneloc serve --checkpoint .oneloc/checkpoints        # the newest checkpoint of a folder, or a file
    oneloc --set serve.port=8080 --set serve.max_replicas=4 serve
    oneloc serve --untrained                             # random weights on the ingested POI catalog (smoke tests)
"""

from __future__ import annotations

import argparse
import time

from oneloc.config import OneLocConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="", help="checkpoint file or folder (default: serve.checkpoint, "
                                                    "else storage.checkpoints)")
    p.add_argument("--untrained", action="store_true",
                   help="write and serve a random-weight checkpoint of model.size on the ingested POI catalog "
                        "(the Delta pois table; serving mechanics only)")
    p.add_argument("--for-seconds", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")


def start(cfg: OneLocConfig, checkpoint: str = "") -> str:
    """Start Ray (if needed) and Serve on ``serve.host:serve.port``, deploy, wait until ready -> the URL."""
    import ray
    from ray import serve

    from oneloc.serving.app import build_app
    from oneloc.serving.config import set_serve_env

    if not ray.is_initialized():
        set_serve_env(cfg.serve.host)  # a local Ray started here gets the Serve settings (serving/config.py)
        ray.init(address=cfg.ray.address or None, num_cpus=cfg.ray.num_cpus or None,
                 include_dashboard=cfg.ray.include_dashboard, log_to_driver=False)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port},
                logging_config={"enable_access_log": cfg.serve.access_log})
    serve.run(build_app({"cfg": cfg, "checkpoint": checkpoint}), name="oneloc", route_prefix="/")
    return f"http://{cfg.serve.host}:{cfg.serve.port}"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop(owns_ray: bool) -> None:
    """Stop serving promptly. A Ray this process started is shut down whole (its Serve app, HAProxy and
    every Ray process with it: no graceful drain to wait for, nothing left running); on a cluster it
    joined, only the app goes (the cluster and its other work stay)."""
    import ray
    from ray import serve

    if owns_ray:
        ray.shutdown()
    else:
        serve.delete("oneloc")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    import signal

    import ray

    checkpoint = args.checkpoint
    if args.untrained:
        from oneloc.errors import ConfigError
        from oneloc.serving.untrained import untrained_checkpoint
        from oneloc.streaming.catalog import read_catalog

        try:
            catalog = read_catalog(cfg)
        except ConfigError as e:
            raise ConfigError(f"--untrained fits its semantic IDs on the stream's POI catalog: {e}") from None
        checkpoint = str(untrained_checkpoint(f"{cfg.storage.path(cfg.storage.checkpoints)}/untrained.pt",
                                              catalog, cfg.model.size, h3_resolution=cfg.index.h3_resolution))
    owns_ray = not ray.is_initialized() and not cfg.ray.address
    # SIGTERM (a service manager, `kill`) stops like Ctrl-C: through the finally below, not by dying
    # with Ray's processes left behind. Set again once Ray is up: ray.init installs its own handler,
    # which aborts the process.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url = start(cfg, checkpoint)
        signal.signal(signal.SIGTERM, _interrupt)
        print(f"OneLoc serving at {url}/v1/recommendations  (docs {url}/docs, metrics {url}/metrics); "
              "Ctrl-C stops", flush=True)
        deadline = time.monotonic() + args.for_seconds if args.for_seconds else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(owns_ray)
    print("stopped", flush=True)
    return 0
