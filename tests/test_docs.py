"""The user's documentation (docs/) against the code it documents, so the two cannot drift.

Each check reads the truth from the code, never from a list written here:
- config: every property of config/schema.json (all nested $defs, walked from the root) has a
  section in docs/configuration.md headed by its dotted path in backticks
  (### `listeners[].timeouts.header`), and every such heading names a real property. Each
  section states its type, its default (which must equal the schema's) or that it is required,
  and has a YAML example that parses; the complete example validates.
- CLI: every subcommand and option of the argparse parser `sluice` uses has a ## `sluice CMD`
  section in docs/cli.md naming the option in backticks.
- admin API: every endpoint and method of `engine.runtime.admin.ENDPOINTS` has a heading
  `` `METHOD /path` `` in docs/admin-api.md.
- metrics: every metric family the Prometheus endpoint renders is named in docs/operations.md.
- the embedding example in docs/embedding.md runs, as a user would run it.
- README.md and docs/README.md link every page; relative links in docs/ resolve.

A failure says what to add and where.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import ROOT, free_port, wait_port

DOCS = ROOT / "docs"
SCHEMA = ROOT / "config" / "schema.json"
PAGES = ("configuration.md", "cli.md", "admin-api.md", "embedding.md", "operations.md")

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
PATH_HEADING = re.compile(r"^`([a-z_][a-z0-9_.\[\]]*)`$")


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """Heading text -> the body up to the next heading of the same or a higher level (fenced code
    blocks are not scanned for headings)."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []     # (line index, level, text)
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            heads.append((i, len(m.group(1)), m.group(2)))
    out = {}
    for k, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[k + 1:] if lv <= level), len(lines))
        out[title] = "\n".join(lines[i + 1:end])
    return out


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.M | re.S)


# ---- configuration ---------------------------------------------------------------------------

def _target(prop: dict) -> tuple[str | None, bool]:
    """The $defs name an object property refers to (directly, through `anyOf` with null, or as
    the items of an array), and whether it is a list of them."""
    def ref(node: dict) -> str | None:
        if "$ref" in node:
            return node["$ref"].rsplit("/", 1)[-1]
        for option in node.get("anyOf", ()):
            if "$ref" in option:
                return option["$ref"].rsplit("/", 1)[-1]
        return None

    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        return ref(prop["items"]), True
    return ref(prop), False


def schema_properties() -> dict[str, tuple[dict, bool]]:
    """Every property path of the schema -> (its schema, whether it is required), e.g.
    `routes[].match.path_prefix`. A list of objects contributes `name` and `name[].field`."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    defs = schema["$defs"]
    out: dict[str, tuple[dict, bool]] = {}

    def walk(node: dict, prefix: str, seen: tuple[str, ...]) -> None:
        required = set(node.get("required", ()))
        for key, prop in node.get("properties", {}).items():
            path = prefix + key
            out[path] = (prop, key in required)
            name, is_list = _target(prop)
            if name is not None and name not in seen:
                walk(defs[name], path + ("[]." if is_list else "."), seen + (name,))

    walk(schema, "", ())
    return out


def documented_properties() -> dict[str, str]:
    """Path -> section body for each ### `path` heading of docs/configuration.md."""
    return {m.group(1): body for title, body in sections(read("configuration.md")).items()
            if (m := PATH_HEADING.match(title))}


def test_every_schema_property_is_documented():
    documented = documented_properties()
    missing = [p for p in schema_properties() if p not in documented]
    assert not missing, "docs/configuration.md does not document: " + "; ".join(
        f"add a section '### `{p}`' (with '- Type:', '- Default:' or '- Required: yes', what it "
        "does, and a ```yaml example)" for p in missing)


def test_every_documented_property_is_in_the_schema():
    known = schema_properties()
    stale = [p for p in documented_properties() if p not in known]
    assert not stale, ("docs/configuration.md documents properties config/schema.json does not "
                       f"have (remove or rename them): {stale}")


def _is_duration(prop: dict) -> bool:
    from engine.policy import durations

    return any(o.get("pattern") == durations.PATTERN for o in prop.get("anyOf", ()))


def _same_default(documented: str, prop: dict) -> bool:
    """Whether the text after '- Default:' states the schema's default."""
    expected = prop["default"]
    if expected is None:
        return documented.startswith("none")
    m = re.match(r"`([^`]*)`", documented)
    if m is None:
        return False
    value = yaml.safe_load(m.group(1))
    if _is_duration(prop):
        from engine.policy.durations import parse_timeout

        return parse_timeout(value) == parse_timeout(expected)
    return value == expected


def test_each_property_states_its_type_and_its_default_or_that_it_is_required():
    problems = []
    for path, (prop, required) in schema_properties().items():
        body = documented_properties().get(path)
        if body is None:
            continue                      # reported by test_every_schema_property_is_documented
        if not re.search(r"^- Type: \S", body, re.M):
            problems.append(f"`{path}`: add a line '- Type: ...'")
        default = re.search(r"^- Default: (.+)$", body, re.M)
        if required:
            if not re.search(r"^- Required: yes$", body, re.M):
                problems.append(f"`{path}` is required: add a line '- Required: yes'")
        elif default is None:
            problems.append(f"`{path}`: add a line '- Default: ...'")
        elif "default" in prop and not _same_default(default.group(1), prop):
            shown = "none" if prop["default"] is None else f"`{prop['default']}`"
            problems.append(f"`{path}`: the schema's default is {shown}, the docs say "
                            f"{default.group(1)!r}")
    assert not problems, "docs/configuration.md: " + "; ".join(problems)


def test_each_property_has_a_yaml_example_that_parses():
    problems = []
    for path, body in documented_properties().items():
        examples = code_blocks(body, "yaml")
        if not examples:
            problems.append(f"`{path}`: add a ```yaml example")
        for example in examples:
            try:
                yaml.safe_load(example)
            except yaml.YAMLError as exc:
                problems.append(f"`{path}`: the example is not YAML: {exc}")
    assert not problems, "docs/configuration.md: " + "; ".join(problems)


def test_the_complete_example_validates_without_warnings():
    from engine.policy import check_text

    body = sections(read("configuration.md"))["A complete example"]
    (example,) = code_blocks(body, "yaml")
    result = check_text(example, "docs/configuration.md")
    assert result.ok and not result.warnings, [str(p) for p in result.problems]


def test_fields_listed_as_not_implemented_are_not_in_the_schema():
    """The page lists fields the team's contract plans but this version refuses; once one is
    implemented (it appears in the schema), it must move into the reference. With nothing left
    to list, the section goes."""
    text = sections(read("configuration.md")).get("Not implemented yet")
    if text is None:
        return
    listed = re.findall(r"`([a-z_][a-z0-9_.\[\]]*)`", text)
    assert listed
    implemented = sorted(set(listed) & set(schema_properties()))
    assert not implemented, ("docs/configuration.md: these are implemented now; move them from "
                             f"'Not implemented yet' into the reference: {implemented}")


# ---- command line ------------------------------------------------------------------------------

class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser captured")
        self.parser = parser


def cli_parser() -> argparse.ArgumentParser:
    """The parser `sluice` really uses: `engine.cli.main` is run until it parses its arguments,
    and stopped there (so this follows the CLI whatever its functions are called)."""
    from engine import cli

    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture
    try:
        cli.main(["--help"])
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError("engine.cli.main did not parse its arguments with argparse")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [opt for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            for opt in action.option_strings]


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [action.metavar or action.dest.upper() for action in parser._actions
            if not action.option_strings
            and not isinstance(action, argparse._SubParsersAction)]


def _names(option: str, text: str) -> bool:
    """Whether `text` shows `option` in code: `--workers` or `--workers N`."""
    return re.search("`" + re.escape(option) + r"[` =]", text) is not None


def test_every_cli_command_and_option_is_documented():
    parser = cli_parser()
    doc = read("cli.md")
    heads = sections(doc)
    problems = []
    for option in _options(parser):
        if not _names(option, heads.get("Global options", "")):
            problems.append(f"add `{option}` (sluice {option}) under '## Global options'")
    commands = _subcommands(parser)
    assert {"run", "validate", "compile"} <= set(commands)
    for name, sub in commands.items():
        title = f"`sluice {name}`"
        body = heads.get(title)
        if body is None:
            problems.append(f"add a section '## {title}' (what it does, every option, exit status)")
            continue
        for option in _options(sub):
            if not _names(option, body):
                problems.append(f"add `{option}` (what it does and its default) under '## {title}'")
        for positional in _positionals(sub):
            if positional not in body:
                problems.append(f"name the argument {positional} under '## {title}'")
        if "Exit status" not in body:
            problems.append(f"say the exit statuses ('Exit status') under '## {title}'")
    assert not problems, "docs/cli.md: " + "; ".join(problems)


def test_the_cli_sections_name_no_command_or_option_that_does_not_exist():
    commands = _subcommands(cli_parser())
    stale = []
    for title, body in sections(read("cli.md")).items():
        m = re.fullmatch(r"`sluice (\w+)`", title)
        if m is None:
            continue
        sub = commands.get(m.group(1))
        if sub is None:
            stale.append(f"the command {title}")
            continue
        real = set(_options(sub)) | {"-h", "--help"}
        stale += [f"{option} under {title}"
                  for option in re.findall(r"`(--?[A-Za-z][\w-]*)[` =]", body)
                  if option not in real]
    assert not stale, f"docs/cli.md documents what does not exist: {stale}"


# ---- admin API ---------------------------------------------------------------------------------

def test_every_admin_endpoint_is_documented():
    from engine.runtime.admin import ENDPOINTS

    titles = set(sections(read("admin-api.md")))
    missing = [f"`{method} {path}`" for path, methods in ENDPOINTS.items() for method in methods
               if f"`{method} {path}`" not in titles]
    assert not missing, "docs/admin-api.md: add a section '### `METHOD /path`' (answer, status " \
                        f"codes) for: {missing}"
    documented = {t.strip("`") for t in titles if re.fullmatch(r"`[A-Z]+ /\S*`", t)}
    real = {f"{m} {p}" for p, methods in ENDPOINTS.items() for m in methods}
    assert documented <= real, f"docs/admin-api.md documents endpoints that do not exist: " \
                               f"{sorted(documented - real)}"


def test_the_admin_limits_in_the_docs_are_the_servers():
    from engine.runtime import admin

    def shown(name: str, value: float) -> str:
        if name in ("MAX_SNAPSHOT", "MAX_BODY", "MAX_HEAD"):
            return f"{value // 1048576} MiB" if value >= 1048576 else f"{value // 1024} KiB"
        if name.endswith("_TIMEOUT"):
            return f"{value:g} s"
        return str(value)

    rows = [line for line in read("admin-api.md").splitlines() if line.startswith("|")]
    problems = []
    for name in ("MAX_SNAPSHOT", "MAX_BODY", "MAX_HEAD", "MAX_UPLOADS", "MAX_CONNECTIONS",
                 "MAX_PENDING", "HEAD_TIMEOUT", "REQUEST_TIMEOUT", "IDLE_TIMEOUT"):
        value = shown(name, getattr(admin, name))
        if not any(f"`{name}`" in row and f"| {value} |" in row for row in rows):
            problems.append(f"a row of the Limits table naming `{name}` with '| {value} |'")
    assert not problems, "docs/admin-api.md: " + "; ".join(problems)


# ---- metrics -----------------------------------------------------------------------------------

def test_every_metric_is_documented():
    from engine._fast.limiter import SharedBuckets
    from engine._fast.stats import Stats
    from engine.runtime import metrics

    text = metrics.render(metrics.registry_for(Stats(max_workers=1), SharedBuckets(64))).decode()
    names = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert names
    doc = read("operations.md")
    missing = [f"`{name}` ({kind})" for name, kind in names if f"`{name}`" not in doc]
    assert not missing, f"docs/operations.md, section Metrics: add {missing}"


# ---- embedding ---------------------------------------------------------------------------------

def _embedding_example() -> str:
    blocks = [b for b in code_blocks(read("embedding.md"), "python")
              if 'if __name__ == "__main__":' in b]
    assert len(blocks) == 1, "docs/embedding.md needs exactly one complete program"
    return blocks[0]


def test_the_embedding_example_runs(tmp_path):
    """The program of docs/embedding.md, run as its text says: filters, apply on SIGHUP, drain
    on SIGTERM."""
    import httpx

    program = tmp_path / "gateway.py"
    program.write_text(_embedding_example(), encoding="utf-8")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"s3cret": "alice"}))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(program), str(port), str(keys)], cwd=tmp_path,
                            env=env)
    try:
        wait_port(port, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz").text == "ok\n"
        r = httpx.get(url + "/api/hello")
        assert r.status_code == 401 and "www-authenticate" in r.headers
        r = httpx.get(url + "/api/hello", headers={"x-api-key": "s3cret"})
        assert r.status_code == 200 and r.text == "hello, alice\n"
        assert r.headers["x-served-by"] == "sluice"

        keys.write_text(json.dumps({"n3w": "bob"}))
        proc.send_signal(signal.SIGHUP)
        for _ in range(200):        # until the new config is in force (each try is a request)
            r = httpx.get(url + "/api/hello", headers={"x-api-key": "n3w"})
            if r.status_code == 200:
                break
        assert r.text == "hello, bob\n"
        assert httpx.get(url + "/api/hello", headers={"x-api-key": "s3cret"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


# ---- links -------------------------------------------------------------------------------------

def test_the_readmes_link_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = read("README.md")
    for page in PAGES:
        assert f"(docs/{page})" in readme, f"README.md, section Documentation: link docs/{page}"
        assert f"({page})" in index, f"docs/README.md: link {page}"
    assert "config/schema.json" in readme and "yaml-language-server" in readme


def anchors(text: str) -> set[str]:
    """The fragment ids GitHub gives the headings of a page: lowercased, punctuation other than
    '-' and '_' dropped, spaces as '-', repeats numbered -1, -2..."""
    seen: dict[str, int] = {}
    out = set()
    for title in sections(text):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_relative_links_in_the_docs_resolve():
    broken = []
    for page in sorted([*DOCS.glob("*.md"), ROOT / "README.md"]):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path) if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and file.suffix == ".md" and \
                    fragment not in anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"
