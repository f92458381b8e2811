"""Ray fixtures: one small local Ray cluster per test session (2 CPUs, no dashboard)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray cluster shared by the session's tests; shut down at the end."""
    import ray

    started = not ray.is_initialized()
    if started:
        from oneloc.serving.config import set_serve_env

        set_serve_env()  # the Ray Serve settings `oneloc serve` starts local Ray with (serving/app.py)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    if started:
        ray.shutdown()
