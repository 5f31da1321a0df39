"""engine/policy/snapshot.py: deterministic snapshots, and every bad one refused in one line."""
import hashlib
import os
from pathlib import Path

import msgpack
import pytest

from engine.policy import ConfigError, load_config
from engine.policy.snapshot import (
    MAGIC_KEY,
    SCHEMA_VERSION,
    SnapshotError,
    SnapshotHeader,
    canonical,
    compile_file,
    content_bytes,
    encode_snapshot,
    load_snapshot,
    main,
    snapshot_of,
)

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = FIXTURES / "config_md_example.yaml"

SMALL = """\
listeners:
  - {name: main, address: 127.0.0.1:8080, routes: [api, web]}
routes:
  - name: api
    match: {path_prefix: /api/}
    timeout: 250ms
    to: [{cluster: api, weight: 3}, {cluster: web}]
  - {name: web, match: {path_prefix: /}, to: [{cluster: web}]}
clusters:
  - {name: api, endpoints: [{address: 127.0.0.1:9001}]}
  - {name: web, endpoints: [{address: 127.0.0.1:9002}]}
"""

# the same config: other key order, flow vs block style, comments, a duration in another unit
SMALL_REWRITTEN = """\
# the same config, written differently
clusters:
  - endpoints: [{address: "127.0.0.1:9001"}]
    name: api
  - name: web
    endpoints:
      - address: 127.0.0.1:9002
listeners:
  - routes: [api, web]
    address: 127.0.0.1:8080
    name: main
routes:
  - to: [{weight: 3, cluster: api}, {cluster: web, weight: 1}]
    timeout: 0.25s
    match: {path_prefix: /api/}
    name: api
  - name: web
    to: [{cluster: web}]
    match: {path_prefix: /}
"""


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture(scope="module")
def config():
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def snapshot(config):
    return encode_snapshot(config, "sluice.yaml", created_at=1714564800)


def write(path: Path, text: str, mtime: int = 1700000000) -> Path:
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


KEEP = object()


def repack(snapshot: bytes, header: dict | None = None, content: object = KEEP) -> bytes:
    """The snapshot with header fields or the content replaced (the digest left as it was)."""
    data = msgpack.unpackb(snapshot)
    data[MAGIC_KEY].update(header or {})
    if content is not KEEP:
        data["content"] = content
    return msgpack.packb(data)


def sealed(plain: dict) -> bytes:
    """A well-formed snapshot of arbitrary content (as another producer might write one)."""
    content = msgpack.packb(plain)
    digest = hashlib.sha256(content).hexdigest()
    return msgpack.packb({MAGIC_KEY: {"schema_version": 1, "config_version": digest[:12],
                                      "sha256": digest, "created_at": "2024-05-01T12:00:00Z",
                                      "source": "cp"}, "content": content})


def refusal(data, **kw) -> str:
    with pytest.raises(SnapshotError) as info:
        load_snapshot(data, **kw)
    assert len(info.value.problems) >= 1
    return str(info.value)


# -- round trip and format ---------------------------------------------------------------------


def test_round_trip_gives_an_equal_config_and_the_header(config, snapshot):
    header, loaded = load_snapshot(snapshot)
    assert loaded == config
    digest = hashlib.sha256(content_bytes(config)).hexdigest()
    assert header == SnapshotHeader(1, digest[:12], digest, "2024-05-01T12:00:00Z", "sluice.yaml")
    assert header.as_dict()["config_version"] == digest[:12]
    assert snapshot_of(config, "sluice.yaml", created_at=1714564800) == (header, snapshot)


def test_format_is_a_magic_header_then_the_content_as_sorted_msgpack(config, snapshot):
    assert snapshot.startswith(b"\x82\xafsluice_snapshot")
    outer = msgpack.unpackb(snapshot)
    assert list(outer) == [MAGIC_KEY, "content"]
    assert list(outer[MAGIC_KEY]) == ["schema_version", "config_version", "sha256", "created_at",
                                      "source"]
    assert outer[MAGIC_KEY]["schema_version"] == SCHEMA_VERSION == 1
    assert outer[MAGIC_KEY]["sha256"] == hashlib.sha256(outer["content"]).hexdigest()
    plain = msgpack.unpackb(outer["content"])
    assert plain == canonical(config.model_dump(mode="json"))

    def keys_sorted(value):
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(map(keys_sorted, value.values()))
        if isinstance(value, list):
            return all(map(keys_sorted, value))
        return True
    assert keys_sorted(plain)


def test_the_same_config_written_differently_has_the_same_content_and_version(tmp_path):
    a = compile_file(write(tmp_path / "a.yaml", SMALL))
    b = compile_file(write(tmp_path / "b.yaml", SMALL_REWRITTEN))
    assert a[0].sha256 == b[0].sha256 and a[0].config_version == b[0].config_version
    assert a[1].replace(b"a.yaml", b"b.yaml") == b[1]


def test_compiling_the_same_file_twice_gives_identical_bytes(tmp_path):
    path = write(tmp_path / "sluice.yaml", SMALL)
    assert compile_file(path)[1] == compile_file(path)[1]


def test_created_at_is_the_file_mtime_and_touching_changes_only_it(tmp_path):
    path = write(tmp_path / "sluice.yaml", SMALL, mtime=1700000000)
    before, data_before, _ = compile_file(path)
    assert before.created_at == "2023-11-14T22:13:20Z"
    os.utime(path, (1700000999, 1700000999))
    after, data_after, _ = compile_file(path)
    assert data_after != data_before
    assert after.created_at == "2023-11-14T22:29:59Z"
    assert (after.sha256, after.config_version, after.source) == \
        (before.sha256, before.config_version, before.source)


def test_source_date_epoch_overrides_the_mtime_for_identical_bytes_across_touches(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1714564800")
    path = write(tmp_path / "sluice.yaml", SMALL, mtime=1700000000)
    first = compile_file(path)
    os.utime(path, (1800000000, 1800000000))
    second = compile_file(path)
    assert first[1] == second[1]
    assert first[0].created_at == "2024-05-01T12:00:00Z"


def test_a_malformed_source_date_epoch_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        compile_file(write(tmp_path / "sluice.yaml", SMALL))


def test_the_source_name_is_the_file_base_name(tmp_path):
    (tmp_path / "deep").mkdir()
    header = compile_file(write(tmp_path / "deep" / "edge.yaml", SMALL))[0]
    assert header.source == "edge.yaml"


def test_compile_file_refuses_an_invalid_config_with_every_problem(tmp_path):
    path = write(tmp_path / "bad.yaml", SMALL.replace("cluster: web}]\n  - {name: web",
                                                      "cluster: nope}]\n  - {name: web")
                 .replace("timeout: 250ms", "timeout: 250x"))
    with pytest.raises(ConfigError) as info:
        compile_file(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(f"{path}: routes[") for line in lines)


def test_compile_file_returns_the_warnings(tmp_path):
    warnings = compile_file(EXAMPLE)[2]
    assert [w.path for w in warnings] == ["clusters[0].hash_on"]


# -- refusals ----------------------------------------------------------------------------------


def test_every_truncation_is_refused_and_named_truncated(snapshot):
    for n in range(len(snapshot)):
        message = refusal(snapshot[:n])
        assert "<snapshot>: <root>: " in message
        if n > 0:
            assert "truncated" in message, (n, message)
    assert refusal(b"") == "<snapshot>: <root>: empty: not a sluice snapshot"


def test_any_flipped_byte_in_the_content_or_digest_is_refused(snapshot):
    accepted = set()
    for i in range(len(snapshot)):
        tampered = bytearray(snapshot)
        tampered[i] ^= 0x01
        try:
            header, _ = load_snapshot(bytes(tampered))
        except SnapshotError as error:
            assert "\n" not in str(error)
        else:
            accepted.add((header.created_at != "2024-05-01T12:00:00Z")
                         or header.source != "sluice.yaml")
    # only the informational fields (not covered by the digest) may change unnoticed
    assert accepted <= {True}


def test_a_tampered_content_is_refused_with_its_digest(snapshot):
    content = bytearray(msgpack.unpackb(snapshot)["content"])
    at = content.index(b"127.0.0.1:9001")
    content[at:at + 14] = b"203.0.113.7:80"
    message = refusal(repack(snapshot, content=bytes(content)), name="snap.msgpack")
    assert message.startswith("snap.msgpack: content: does not match its sha256 ")
    assert "changed or corrupted" in message


def test_a_config_version_that_does_not_match_the_content_is_refused(snapshot):
    message = refusal(repack(snapshot, {"config_version": "v2"}))
    assert message == ("<snapshot>: sluice_snapshot.config_version: 'v2' does not match the "
                       f"content (expected '{msgpack.unpackb(snapshot)[MAGIC_KEY]['sha256'][:12]}')")


@pytest.mark.parametrize("version, newer", [(2, True), (0, False), (99, True)])
def test_an_unknown_schema_version_is_refused(snapshot, version, newer):
    message = refusal(repack(snapshot, {"schema_version": version}))
    assert message.startswith(f"<snapshot>: sluice_snapshot.schema_version: schema version "
                              f"{version} is not supported")
    assert message.endswith("this build reads schema version 1")
    assert ("newer sluice" in message) is newer


@pytest.mark.parametrize("field, value, reason", [
    ("schema_version", "1", "missing or not an integer"),
    ("schema_version", True, "missing or not an integer"),
    ("sha256", None, "missing or not a string"),
    ("created_at", 1714564800, "missing or not a string"),
])
def test_a_header_field_of_the_wrong_type_is_refused(snapshot, field, value, reason):
    assert refusal(repack(snapshot, {field: value})) == \
        f"<snapshot>: sluice_snapshot.{field}: {reason}"


def test_unknown_header_keys_are_ignored(config, snapshot):
    assert load_snapshot(repack(snapshot, {"generator": "sluice 9"}))[1] == config


@pytest.mark.parametrize("data", [
    b"\x00", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"listeners": []}),
    msgpack.packb(["sluice_snapshot"]), bytes(range(256)), b"\x82\xaf" + b"z" * 40,
])
def test_garbage_is_not_a_snapshot(data):
    assert refusal(data) == ("<snapshot>: <root>: not a sluice snapshot (expected msgpack made "
                             "by 'sluice compile')")


def test_yaml_given_as_a_snapshot_gets_a_hint():
    message = refusal(EXAMPLE.read_bytes(), name="sluice.yaml")
    assert message.startswith("sluice.yaml: <root>: not a sluice snapshot")
    assert "a YAML config is compiled with 'sluice compile' or run with -c" in message


def test_trailing_bytes_are_refused(snapshot):
    assert refusal(snapshot + snapshot) == (
        f"<snapshot>: <root>: {len(snapshot)} unexpected bytes after the end of the snapshot "
        "(two snapshots in one file?)")


def test_content_that_is_not_a_byte_string_is_refused(snapshot):
    assert refusal(repack(snapshot, content=None)) == \
        "<snapshot>: content: missing or not a byte string"


def test_content_is_validated_again_with_every_error(config):
    plain = canonical(config.model_dump(mode="json"))
    plain["routes"][1]["to"][0]["cluster"] = "missing"
    plain["clusters"][0]["connect_timeout"] = -1
    with pytest.raises(SnapshotError) as info:
        load_snapshot(sealed(plain), name="cp.msgpack")
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert any(line.startswith("cp.msgpack: routes[1].to[0].cluster: ") for line in lines)
    assert any(line.startswith("cp.msgpack: clusters[0].connect_timeout: ") for line in lines)
    assert isinstance(info.value, ConfigError)


def test_a_corrupted_header_is_refused(snapshot):
    corrupted = bytearray(snapshot)
    corrupted[len(b"\x82\xafsluice_snapshot")] = 0xC1  # a byte msgpack never uses
    assert refusal(bytes(corrupted)).startswith(
        "<snapshot>: <root>: corrupted: not valid msgpack")


def test_content_that_is_not_msgpack_is_refused():
    content = b"\xc1\xc1"
    digest = hashlib.sha256(content).hexdigest()
    data = msgpack.packb({MAGIC_KEY: {"schema_version": 1, "config_version": digest[:12],
                                      "sha256": digest, "created_at": "", "source": ""},
                          "content": content})
    assert refusal(data).startswith("<snapshot>: content: is not msgpack data")


def test_a_snapshot_from_an_older_build_without_newer_defaults_still_loads(config):
    # an older build did not know the fields added since (with defaults): their absence is fine
    plain = canonical(config.model_dump(mode="json"))
    del plain["filters"], plain["access_log"]
    for route in plain["routes"]:
        del route["filters"]
    for listener in plain["listeners"]:
        del listener["limits"]
    assert load_snapshot(sealed(plain))[1] == config


# -- files and the command ---------------------------------------------------------------------


def test_load_snapshot_reads_a_path_and_names_it(tmp_path, config, snapshot):
    path = tmp_path / "snap.msgpack"
    path.write_bytes(snapshot)
    assert load_snapshot(path)[1] == config
    assert load_snapshot(str(path))[1] == config
    assert refusal(tmp_path / "absent.msgpack").startswith(
        f"{tmp_path / 'absent.msgpack'}: <root>: cannot read the file: ")
    path.write_bytes(snapshot[:-1])
    assert refusal(str(path)).startswith(f"{path}: <root>: truncated")


def test_compile_command_writes_the_snapshot_and_no_temporary(tmp_path, capsys):
    source = write(tmp_path / "sluice.yaml", SMALL)
    out = tmp_path / "out.msgpack"
    assert main([str(source), "-o", str(out)]) == 0
    assert out.read_bytes() == compile_file(source)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.msgpack", "sluice.yaml"]
    assert "config version" in capsys.readouterr().err
    assert main([str(source)]) == 0  # default output: the suffix replaced
    assert (tmp_path / "sluice.msgpack").read_bytes() == out.read_bytes()


def test_compile_command_prints_every_error_and_exits_1(tmp_path, capsys):
    source = write(tmp_path / "bad.yaml", SMALL.replace("weight: 3", "weight: 0")
                   .replace("address: 127.0.0.1:8080", "address: nowhere"))
    out = tmp_path / "out.msgpack"
    assert main([str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"{source}: listeners[0].address: ")
    assert err[1].startswith(f"{source}: routes[0].to[0].weight: ")
    assert not out.exists()
