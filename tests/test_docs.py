"""The docs site and the README: the site builds with ``--strict``, every code block runs or is
marked, the generated references cover every key and command, nothing of the old README is lost.

Code blocks (README.md and docs/**/*.md), by the line right before the opening fence:

- ``<!-- not run -->`` or ``<!-- not run: why -->``: not run (a shell session, a fragment, a
  command that installs or serves). Use it only when the block cannot run alone.
- ``<!-- file: path/to/module.py -->``: the block is written to that path (with the packages'
  ``__init__.py``) in the page's scratch directory, for the page's later blocks to import.
- no marker, ``python``: run. A page's Python blocks run in order, as one module (not
  ``__main__``) in a fresh interpreter, against the test suite's Redis (``REDIS_URL``), under a
  namespace of their own, in a scratch directory.
- no marker, ``yaml``: loaded by ``forkq.config.load`` as a forkq.yml: it must be a valid
  configuration.
- a ``python`` block that is only ``--8<-- "path"``: MkDocs shows that file (pymdownx.snippets);
  the file must exist and a test module must name it (it runs there).
- any other block without a marker fails this test.
"""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
import gen_reference  # noqa: E402  (docs/gen_reference.py, the MkDocs hook)

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
MARK = re.compile(r"^<!-- (not run(?::[^>]*)?|file: (?P<path>\S+)) -->$")
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"\s*$')


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    mark: str | None
    file: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted(DOCS.rglob("*.md"))


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.match(before)
        found.append(Block(page, line, match[1], match[2], mark and mark[1],
                           mark and mark["path"]))
    return found


ALL_BLOCKS = [block for page in pages() for block in blocks(page)]


def test_the_block_reader_sees_every_fence():
    """Each page has an even number of fence lines, all of them read as blocks."""
    for page in pages():
        fences = [n for n, line in enumerate(page.read_text().splitlines())
                  if line.startswith("```")]
        assert len(fences) == 2 * len(blocks(page)), page


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if not b.mark],
                         ids=lambda b: b.where)
def test_an_unmarked_block_is_python_yaml_or_an_included_file(block):
    assert block.language in ("python", "yaml"), (
        f"{block.where}: a ```{block.language} block without a marker; mark it "
        f"<!-- not run: why --> (see tests/test_docs.py)")


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if SNIPPET.match(b.code.strip())],
                         ids=lambda b: b.where)
def test_an_included_file_exists_and_a_test_runs_it(block):
    path = SNIPPET.match(block.code.strip())["path"]
    assert (ROOT / path).is_file(), f"{block.where}: {path} does not exist"
    module = path.removesuffix(".py").replace("/", ".")
    tests = " ".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py")
                     if p.name != "test_docs.py")
    assert path in tests or module in tests, f"{block.where}: no test names {path}"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.language == "yaml" and not b.mark],
                         ids=lambda b: b.where)
def test_a_yaml_block_is_a_valid_configuration(block, tmp_path):
    from forkq import config

    path = tmp_path / "forkq.yml"
    path.write_text(block.code)
    config.load(str(path), environ={})


def runnable_pages() -> list[Path]:
    return sorted({b.page for b in ALL_BLOCKS if b.language == "python" and not b.mark
                   and not SNIPPET.match(b.code.strip())})


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_blocks_of_a_page_run(page, redis_url, tmp_path):
    module = ["import forkq"]
    for block in blocks(page):
        if block.file:
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            for package in target.relative_to(tmp_path).parents:
                if str(package) != ".":
                    (tmp_path / package / "__init__.py").touch()
            target.write_text(block.code)
        elif block.language == "python" and not block.mark:
            module.append(f"# --- {block.where}\n{block.code}")
    (tmp_path / "docs_page.py").write_text("\n".join(module))
    namespace = "docs-" + re.sub(r"\W", "-", str(page.relative_to(ROOT)))
    env = dict(os.environ, REDIS_URL=redis_url, FORKQ_NAMESPACE=namespace,
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    env.pop("FORKQ_CONFIG", None)
    run = subprocess.run([sys.executable, "-c", "import docs_page"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{page.relative_to(ROOT)}'s Python blocks failed:\n{run.stderr}"


def test_a_file_block_is_valid_python():
    for block in ALL_BLOCKS:
        if block.file and block.file.endswith(".py"):
            compile(block.code, block.where, "exec")
