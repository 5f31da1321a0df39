"""Micro benchmarks (pytest-benchmark) and the harness's own checks. Not collected by a plain
`pytest` (testpaths = tests); run them with

    python -m pytest bench -q --benchmark-disable      # CI: each benchmark body once, seconds
    python -m pytest bench --benchmark-only            # by hand: timed, with a comparison table
    python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-sort=mean
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:            # `import bench` and the in-place `engine` build, however run
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402  (after the path set-up above)


@pytest.fixture
def upstream(tmp_path):
    """The nginx upstream the peers proxy to (bench.peers.UpstreamNginx), for harness checks."""
    from bench.peers import UpstreamNginx

    u = UpstreamNginx(tmp_path / "upstream")
    yield u
    u.stop()
