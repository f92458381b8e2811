"""Print a benchmark's result as JSON and, when asked, write the same text to a file. No heavy
imports: the GPU machine runs benchmarks without Ray."""

from __future__ import annotations

import json


def emit(result: dict, out: str = "") -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
