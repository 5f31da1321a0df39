"""engine/policy/link.py: a listener's `paths` settings become Listener.path_flags."""
import pytest

from engine._fast.paths import (
    PATH_FLAGS_DEFAULT,
    PATH_KEEP_ESCAPED_SLASHES,
    PATH_MERGE_SLASHES,
    PATH_NORMALIZE,
)
from engine.policy.link import link
from engine.policy.model import Config

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
    "routes": [{"name": "web", "match": {"path_prefix": "/"},
                "direct_response": {"status": 200}}],
}


@pytest.mark.parametrize("paths, flags", [
    (None, PATH_FLAGS_DEFAULT),
    ({}, PATH_NORMALIZE | PATH_MERGE_SLASHES),
    ({"escaped_slashes": "keep"}, PATH_NORMALIZE | PATH_MERGE_SLASHES | PATH_KEEP_ESCAPED_SLASHES),
    ({"merge_slashes": False}, PATH_NORMALIZE),
    ({"normalize": False}, PATH_MERGE_SLASHES),
    ({"normalize": False, "merge_slashes": False, "escaped_slashes": "keep"},
     PATH_KEEP_ESCAPED_SLASHES),
])
def test_listener_path_flags(paths, flags):
    listener = dict(BASE["listeners"][0])
    if paths is not None:
        listener["paths"] = paths
    config = Config.model_validate(dict(BASE, listeners=[listener]))
    assert link(config, None).listeners["main"].path_flags == flags
