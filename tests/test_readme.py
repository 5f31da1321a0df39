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
