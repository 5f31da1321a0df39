"""engine/_fast/errors.pyx: the one error table."""
from engine._fast.errors import error_table

T = error_table()


def test_every_kind_has_a_status_and_a_body():
    for name, (kind, status, body, rst, grpc, close, overloaded) in T.items():
        if name in ("none", "client_closed"):
            continue
        assert 400 <= status <= 599, name
        assert body.endswith(b"\n") and len(body) > 1, name


def test_envoy_mapping_of_upstream_failures():
    assert T["no_route"][1] == 404
    assert T["rate_limited"][1] == 429
    assert T["no_healthy_upstream"][1] == 503
    assert T["pool_overflow"][1] == 503
    assert T["connect_failed"][1] == 502
    assert T["upstream_reset"][1] == 502
    assert T["upstream_timeout"][1] == 504


def test_grpc_statuses_follow_the_http_to_grpc_mapping():
    assert T["no_route"][4] == 12            # UNIMPLEMENTED
    assert T["rate_limited"][4] == 8         # RESOURCE_EXHAUSTED
    assert T["upstream_timeout"][4] == 4     # DEADLINE_EXCEEDED
    for name in ("no_healthy_upstream", "pool_overflow", "connect_failed", "upstream_reset"):
        assert T[name][4] == 14, name        # UNAVAILABLE


def test_errors_that_leave_the_request_unread_close_the_connection():
    for name in ("bad_request", "bad_target", "bad_host", "bad_path", "header_timeout",
                 "body_timeout", "connect_method"):
        assert T[name][5], name
    for name in ("no_route", "rate_limited", "no_healthy_upstream"):
        assert not T[name][5], name


def test_the_operations_guide_lists_every_row_as_it_is():
    """docs/operations.md's table of local replies is the table, row for row."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name, (kind, status, body, rst, grpc, close, overloaded) in T.items():
        if name in ("none", "client_closed"):
            continue
        row = f"| `{status}` | `{body.decode().strip()}` |"
        assert row in text, name
        line = text[text.index(row):].split("\n", 1)[0]
        assert line.endswith("| closed |" if close else "| kept |"), name


def test_replies_of_a_limit_say_overloaded():
    """Shedding (pool overflow, circuit breaker, loop lag) is told apart from a broken upstream
    by x-sluice-overloaded; nothing else carries it."""
    shed = {name for name, row in T.items() if row[6]}
    assert shed == {"pool_overflow", "overloaded", "circuit_open"}
    for name in shed:
        assert T[name][1] == 503 and T[name][4] == 14, name
