"""engine/runtime/worker.py: what a worker does with an `apply` message from the supervisor."""

from __future__ import annotations

import pickle

import pytest

from engine.policy import load_config_text
from engine.policy.snapshot import encode_snapshot
from engine.runtime import worker

CONFIG = """
listeners: [{name: main, address: "127.0.0.1:8080", routes: [r]}]
routes: [{name: r, match: {path_prefix: /}, direct_response: {status: 200, body: hi}}]
"""


def test_a_config_the_supervisor_validated_is_not_validated_again(monkeypatch):
    config = load_config_text(CONFIG)

    def no(*args, **kwargs):
        raise AssertionError("validated again in the worker")

    import engine.policy.load
    import engine.policy.snapshot
    monkeypatch.setattr(engine.policy.load, "check_data", no)
    monkeypatch.setattr(engine.policy.snapshot, "check_data", no)
    got = worker.received_config({"op": "apply", "version": "v", "config": pickle.dumps(config)})
    assert got == config


def test_snapshot_bytes_alone_are_verified_and_validated():
    config = load_config_text(CONFIG)
    data = encode_snapshot(config, "c.yaml")
    assert worker.received_config({"op": "apply", "snapshot": data}) == config
    from engine.policy.snapshot import SnapshotError
    with pytest.raises(SnapshotError):
        worker.received_config({"op": "apply", "snapshot": data[:-3]})
