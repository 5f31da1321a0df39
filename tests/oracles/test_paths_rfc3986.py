"""engine/_fast/paths.pyx against a reference written from RFC 3986 with urllib.parse, and the
properties a normalised path must have. CI-sized: a few thousand examples, seconds.

The reference works the way the RFC reads, not the way paths.pyx is built (one pass, segment
by segment, in place): it validates every escape first, merges slashes with a regex, decodes
escapes with `urllib.parse.unquote_to_bytes` one at a time, then runs remove_dot_segments as the
string-rewriting loop of RFC 3986 5.2.4 (rules A-E) over the whole path."""
import re
from urllib.parse import unquote_to_bytes

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine._fast.paths import (
    PATH_ERR_BAD_ESCAPE,
    PATH_ERR_ESCAPED_SLASH,
    PATH_ERR_NUL,
    PATH_ERR_OVERLONG,
    PATH_KEEP_ESCAPED_SLASHES,
    PATH_MERGE_SLASHES,
    PATH_NORMALIZE,
    PathError,
    normalize,
)

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEXDIG = frozenset(b"0123456789ABCDEFabcdef")


def escape_value(path: bytes, i: int) -> int | None:
    """RFC 3986 2.1: pct-encoded = "%" HEXDIG HEXDIG."""
    if path[i:i + 1] == b"%" and len(path) >= i + 3 and set(path[i + 1:i + 3]) <= HEXDIG:
        return unquote_to_bytes(path[i:i + 3])[0]
    return None


def overlong(lead: int, nxt: int | None) -> bool:
    """RFC 3629 3: C0, C1, E0 80-9F, F0 80-8F only ever start overlong forms."""
    if nxt is None or not 0x80 <= nxt <= 0xBF:
        return False
    return lead in (0xC0, 0xC1) or (lead == 0xE0 and nxt <= 0x9F) or (lead == 0xF0 and nxt <= 0x8F)


def reference_errors(path: bytes, keep: bool) -> int | None:
    i = 0
    while i < len(path):
        c = path[i]
        if c == 0x25:
            v = escape_value(path, i)
            if v is None:
                return PATH_ERR_BAD_ESCAPE
            if v == 0:
                return PATH_ERR_NUL
            if v in (0x2F, 0x5C) and not keep:
                return PATH_ERR_ESCAPED_SLASH
            if overlong(v, escape_value(path, i + 3)):
                return PATH_ERR_OVERLONG
            i += 3
            continue
        if c == 0x5C and not keep:
            return PATH_ERR_ESCAPED_SLASH
        i += 1
    return None


def decode_unreserved(path: bytes) -> bytes:
    """RFC 3986 6.2.2.1 and 6.2.2.2: decode unreserved escapes, upper-case the others' hex."""
    def one(m: re.Match) -> bytes:
        raw = unquote_to_bytes(m[0])
        return raw if raw[0] in UNRESERVED else m[0].upper()
    return re.sub(rb"%[0-9A-Fa-f]{2}", one, path)


def remove_dot_segments(inp: bytes) -> bytes:
    """RFC 3986 5.2.4, rule by rule."""
    out = b""
    while inp:
        if inp.startswith(b"../"):                                   # A
            inp = inp[3:]
        elif inp.startswith(b"./"):
            inp = inp[2:]
        elif inp.startswith(b"/./"):                                 # B
            inp = inp[2:]
        elif inp == b"/.":
            inp = b"/"
        elif inp.startswith(b"/../"):                                # C
            inp = inp[3:]
            out = out[:out.rfind(b"/")] if b"/" in out else b""
        elif inp == b"/..":
            inp = b"/"
            out = out[:out.rfind(b"/")] if b"/" in out else b""
        elif inp in (b".", b".."):                                   # D
            inp = b""
        else:                                                        # E
            j = inp.find(b"/", 1)
            j = len(inp) if j < 0 else j
            out, inp = out + inp[:j], inp[j:]
    return out


def reference(path: bytes, flags: int) -> bytes | int:
    if not path.startswith(b"/"):
        return path
    err = reference_errors(path, bool(flags & PATH_KEEP_ESCAPED_SLASHES))
    if err is not None:
        return err
    if flags & PATH_MERGE_SLASHES:
        path = re.sub(rb"/+", b"/", path)
    if flags & PATH_NORMALIZE:
        path = remove_dot_segments(decode_unreserved(path))
    return path


def ours(path: bytes, flags: int, in_place: bool = False) -> bytes | int:
    try:
        return normalize(path, flags, in_place)
    except PathError as e:
        return e.code


# Paths made of the pieces an attacker combines, plus any printable ASCII (what the codec lets
# through: RFC 9112 request-target bytes are VCHAR), as segments of 0-3 pieces between runs of
# "/", with whole dot segments (plain or escaped) weighted up.
PIECES = [b".", b"..", b"%2e", b"%2E", b"%2f", b"%2F", b"%5c", b"%5C", b"\\", b"/",
          b"a", b"admin", b"%61", b"%7e", b"%7E", b"%25", b"%252e", b"%3b", b";", b"x=1", b"%zz",
          b"%4", b"%", b"%00", b"%c0", b"%C0%ae", b"%c1%9c", b"%e0%80%ae", b"%e0%a0%80",
          b"%f0%80%80%ae", b"%f0%90%80%80", b"%ae", b"%80", b"%e9", b"%20", b"~", b"-", b"_"]
DOTS = [b".", b"..", b"%2e", b"%2E%2e", b".%2E", b"%2e."]
printable = st.binary(min_size=1, max_size=3).map(lambda b: bytes(0x21 + c % 94 for c in b))
piece = st.one_of(st.sampled_from(PIECES), printable)
segment = st.one_of(st.sampled_from(DOTS), st.lists(piece, max_size=3).map(b"".join))
separator = st.sampled_from([b"/", b"/", b"/", b"//", b"///"])
paths = st.lists(st.tuples(separator, segment), max_size=8).map(
    lambda parts: b"/" + b"".join(seg + sep for sep, seg in parts))
flags = st.integers(0, 7)

CI = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CI
@given(paths, flags)
@example(b"/a//..", 7)
@example(b"/.%2e/%2e./..", 3)
@example(b"/x/..%2fadmin", 7)
@example(b"/%2e%2e%2f", 7)
def test_matches_the_rfc3986_reference_and_the_result_is_normal(path, fl):
    result = ours(path, fl)
    assert result == reference(path, fl) == ours(path, fl, in_place=True)
    if not isinstance(result, bytes):
        return
    assert ours(result, fl) == result                                  # idempotent
    segments = result.split(b"/")[1:]
    if fl & PATH_NORMALIZE:
        assert b"." not in segments and b".." not in segments
        assert not re.search(rb"%(?i:[46][1-9a-f]|[57][0-9a]|3[0-9]|2d|2e|5f|7e)", result), \
            "an unreserved character stayed encoded"
    if fl & PATH_MERGE_SLASHES:
        assert b"//" not in result
    # never a decoded %2F or %5C: no separator appears that the input did not have
    assert result.count(b"/") <= path.count(b"/")
    assert result.count(b"\\") <= path.count(b"\\")
    assert len(result) <= len(path)
