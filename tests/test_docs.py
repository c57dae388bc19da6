"""The manual builds without a warning, and every Python example in the README and the docs runs as a script.

The docs build is strict (mkdocs.yml), so a broken link, a missing page or a stale API reference fails here; the
CLI reference page is generated from the parser, so it is checked by construction. Each ```python block runs
exactly as shown, saved to its own file and run with `python FILE` in an empty directory: that is how a user
copies it, and it is what catches a missing `if __name__ == "__main__":` guard (worker processes re-import the
script).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _python_examples() -> list[tuple[str, str]]:
    examples = []
    for document in _documents():
        for number, match in enumerate(PYTHON_BLOCK.finditer(document.read_text(encoding="utf-8"))):
            examples.append((f"{document.relative_to(ROOT)}#{number}", match.group(1)))
    return examples


def _environment() -> dict[str, str]:
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1", OMP_NUM_THREADS="1")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    return environment


def test_docs_build_with_warnings_as_errors(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    reference = (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("find", "report", "verify", "transfer", "transfer-matrix", "export", "cost", "stability"):
        assert f'id="ticketlab-{command}"' in reference, command


def test_every_page_is_in_the_navigation():
    navigation = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md")}
    assert {page for page in pages if page not in navigation} == set()


@pytest.mark.parametrize("name,code", _python_examples(), ids=[name for name, _ in _python_examples()])
def test_python_example_runs_as_a_script(name, code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_environment(), capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, f"{name} failed:\n{ran.stderr[-3000:]}"
    assert "Traceback" not in ran.stderr
