"""The README's snippets do what the README says: the embedding program runs as written."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT, free_port


def python_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index(heading):].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_embedding_snippet_runs_as_written(tmp_path):
    code = python_block_after("## Embedding").replace("8081", str(free_port()))
    script = tmp_path / "embed.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 200 OK") and out.stdout.rstrip().endswith("hello")


def test_the_https_tour_step_works_as_written(tmp_path, upstream):
    """The README's HTTPS block, run line by line in a copy of config/ (ports moved to free
    ones, `sluice` as `python -m engine` of this tree): the certificate script, sluice on
    config/tls.yaml, and `curl --cacert` through to an upstream."""
    import os
    import shlex
    import shutil

    from support import wait_port

    text = (ROOT / "README.md").read_text()
    block = text[text.index("HTTPS: `config/tls.yaml`"):].split("```sh\n", 1)[1].split("```")[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    lines = [line for line in lines if line]
    assert [line.split()[0] for line in lines] == ["python3", "sluice", "curl"]
    assert "--cacert" in lines[2]

    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "make_demo_certs.py", tmp_path / "config")
    port, admin = free_port(), free_port()
    (tmp_path / "config" / "tls.yaml").write_text(
        (ROOT / "config" / "tls.yaml").read_text().replace("8443", str(port))
        .replace("9902", str(admin)).replace("127.0.0.1:9001", upstream.address))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def argv(line: str) -> list[str]:
        words = [w.replace("8443", str(port)) for w in shlex.split(line.rstrip("&"))]
        if words[0] == "python3":
            return [sys.executable, *words[1:]]
        if words[0] == "sluice":
            return [sys.executable, "-m", "engine", *words[1:]]
        return words

    subprocess.run(argv(lines[0]), cwd=tmp_path, env=env, check=True, capture_output=True,
                   timeout=60)
    proxy = subprocess.Popen(argv(lines[1]), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proxy)
        done = subprocess.run(argv(lines[2]), cwd=tmp_path, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("HTTP/2 200"), done.stdout   # h2, chosen by ALPN
        assert '"path":"/anything"' in done.stdout.replace(" ", ""), done.stdout
    finally:
        proxy.terminate()
        proxy.wait(30)
