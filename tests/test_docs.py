"""The docs site and the README: the site builds with ``--strict``, every code block runs or is
marked, the generated references cover every key and command, nothing of the old README is lost.

Code blocks (README.md and docs/**/*.md), by the line right before the opening fence:

- ``<!-- not run -->`` or ``<!-- not run: why -->``: not run (a shell session, a fragment, a
  command that installs or serves). Use it only when the block cannot run alone.
- ``<!-- file: path/to/module.py -->``: the block is written to that path (with the packages'
  ``__init__.py``) in the page's scratch directory, for the page's later blocks to import.
- no marker, ``python``: run. A page's Python blocks run in order, as one module (not
  ``__main__``, ``import forkq`` done first) in a fresh interpreter, against the test suite's Redis (``REDIS_URL``), under a
  namespace of their own, in a scratch directory.
- no marker, ``yaml``: loaded by ``forkq.config.load`` as a forkq.yml: it must be a valid
  configuration.
- a ``python`` block that is only ``--8<-- "path"``: MkDocs shows that file (pymdownx.snippets);
  the file must exist and a test module must name it (it runs there).
- any other block without a marker fails this test.
"""

import importlib.util
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


def _load_hook():
    """docs/gen_reference.py, the MkDocs hook, which is not in a package."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen_reference = _load_hook()

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


# --- the site

@pytest.mark.slow
def test_the_site_builds_strict_and_offline(tmp_path):
    """``mkdocs build --strict`` (a warning fails it), without a network where ``unshare`` can
    take it away; the generated pages hold what they are generated from."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-rn"] + command
    started = time.monotonic()
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT)))
    assert build.returncode == 0, build.stderr
    print(f"mkdocs build: {time.monotonic() - started:.1f} s")
    api = (tmp_path / "reference/api/index.html").read_text()
    for module in ("forkq.client", "forkq.aio", "forkq.results", "forkq.limiter", "forkq.testing",
                   "forkq.hooks", "forkq.api", "forkq.contrib.django.backend"):
        assert f'id="{module}"' in api, module
    assert 'id="forkq.job.Job"' in api and 'id="forkq.job.job"' in api
    assert 'id="concurrency"' in (tmp_path / "reference/configuration/index.html").read_text()
    assert "usage: forkq start" in (tmp_path / "reference/cli/index.html").read_text()
    for page in ("index.html", "reference/api/index.html"):  # the pages load nothing remote
        html = (tmp_path / page).read_text()
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html), page


# --- the generated references

def test_the_configuration_reference_has_every_key_and_section_field():
    import dataclasses

    from forkq import config

    page = gen_reference.configuration()
    defaults = config.Config()
    for key in config.PARSERS:
        assert f"### `{key}` {{#{key}}}" in page, key
        section = getattr(defaults, key)
        for field in dataclasses.fields(section) if dataclasses.is_dataclass(section) else ():
            assert f"#### `{key}.{field.name}`" in page, f"{key}.{field.name}"
    assert "Default: `25`; environment: `FORKQ_TIMEOUT`." in page
    assert "`REDIS_URL`" in page.split("### `redis_url`")[1].split("###")[0]


def test_a_key_that_forkq_yml_does_not_document_stops_the_build(tmp_path, monkeypatch):
    lines = (ROOT / "forkq.yml").read_text().splitlines()
    key = next(n for n, line in enumerate(lines) if line.startswith("timeout:"))
    start = key
    while lines[start - 1].startswith("#"):  # the comment block that documents it
        start -= 1
    assert start < key or " #" in lines[key]
    lines[start:key + 1] = ["timeout: 25"]
    undocumented = tmp_path / "forkq.yml"
    undocumented.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(gen_reference, "EXAMPLE", undocumented)
    with pytest.raises(gen_reference.UndocumentedKey, match="'timeout'"):
        gen_reference.configuration()


def test_the_cli_reference_has_the_help_of_every_command():
    from forkq import cli, ctl

    page = gen_reference.cli()
    for program, module in (("forkq", cli), ("forkqctl", ctl)):
        assert f"## `{program}`\n" in page
        for command in gen_reference._commands(module.build_parser()):
            section = page.split(f"## `{program} {command}`\n", 1)
            assert len(section) == 2, f"{program} {command}"
            assert "usage:" in section[1].split("## `", 1)[0], f"{program} {command}"


def test_every_metric_is_documented():
    page = (DOCS / "reference/metrics.md").read_text()
    source = " ".join(p.read_text() for p in (ROOT / "forkq/metrics").glob("*.py"))
    names = set(re.findall(r'"(forkq_[a-z_]+?)(?:_total)?"', source))
    sizes = re.search(r'for name, text in \((.*?)\):\n.*?f"forkq_\{name\}_size"', source, re.S)
    names |= {f"forkq_{name}_size" for name in re.findall(r'\("(\w+)", "', sizes[1])}
    assert len(names) >= 20
    for name in sorted(names):
        assert f"`{name}`" in page or f"`{name}_total`" in page, f"{name} is not in metrics.md"


# --- the README, and what moved out of it

def test_the_readme_is_short_and_its_two_commands_are_true():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert ("python3 -m venv .venv && .venv/bin/pip install -q . && "
            ".venv/bin/python examples/demo.py") in text
    assert (ROOT / "examples/demo.py").is_file()
    assert "\nbash tests/run\n" in text and "bash tests/run" in (ROOT / ".ci/run").read_text()
    assert "pip install '.[django]'" in text
    for line in text.splitlines():
        if "forkq[django]" in line:
            assert "published" in line, line


def dependency_names() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values()
                                       for s in extra if not s.startswith("forkq")]
    return sorted({re.match(r"[A-Za-z0-9_.-]+", spec)[0] for spec in specs})


def test_every_dependency_is_listed():
    readme = (ROOT / "README.md").read_text().split("## Dependencies", 1)[1].split("\n## ", 1)[0]
    page = (DOCS / "reference/dependencies.md").read_text()
    for name in dependency_names():
        assert f"`{name}" in page, f"{name} is not in docs/reference/dependencies.md"
        if name in runtime_dependencies():
            assert f"`{name}" in readme, f"{name} is not in the README's Dependencies"


def runtime_dependencies() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.match(r"[A-Za-z0-9_.-]+", spec)[0] for spec in project["dependencies"]}


#: each heading of the README before the docs site (953 lines), with words of its text
FORMER_README = {
    "New to forkq?": "goes from a module of your own jobs to a running worker",
    "Two commands": "On a fresh Debian/Ubuntu machine with Python 3.11+, from",
    "What forkq does not do yet": "Windows: the supervisor forks its workers; forkq is tested",
    "Usage": "Arguments must survive a JSON round trip unchanged.",
    "Coroutine jobs": "A job whose `perform` is `async def`, or `@forkq.job`",
    "Results": "With the `result_ttl` option (seconds; off by default) a",
    "The asyncio client": "Every enqueue method has an awaitable twin on `redis.asyncio`,",
    "Where an enqueueing process finds Redis": "A producer (a web app, a script) reads the",
    "Job options": "(`options = {...}` or decorator keywords) and per call (`.set(...)`)",
    "Middleware and handlers": "`forkq.client_middleware(fn)` registers `fn(job_class, payload,",
    "Testing your application": "`forkq.testing` runs without Redis, taking every job through",
    "Running": "`forkq enqueue` pushes one job by its wire name",
    "The web UI": "`forkq web -c forkq.yml` serves Sidekiq's pages (dashboard `/`,",
    "Configuration": "at the repository root documents every key with its default",
    "The delivery contract": "**At least once.** A job leaves Redis only",
    "So a job can run twice": "pass ids, not objects, and load fresh state in",
    "Periodic jobs, unique jobs and limits": "What exists so far, as it behaves in this",
    "Periodic jobs": "Declared in `forkq.yml` (`periodic:`, a list;",
    "When": "An `every: N` entry ticks at the multiples of",
    "Exactly one enqueue per tick": "masters share the Redis. The masters' loops compete",
    "Ticks a leader did not enqueue": "A new leader carries on from the cursor: ticks",
    "The job": "The entry's class with its `args`, on its `queue`",
    "Visible": "`forkqctl status` prints `periodic leader: <identity> (master pid N)`",
    "Unique jobs": "`unique_for` (seconds, > 0) makes a job unique; it",
    "Limits": "`forkq/limiter.py` holds `concurrent(name, limit, lock_timeout=30,",
    "Time limits": "`soft_time_limit` and `time_limit` are seconds from the job's start",
    "Expiring jobs": "`expires_in` (seconds): a job not started within that time",
    "Keys, and what survives kill -9": "kill -9 of the leading master: its lease",
    "Cost": "`python bench/flow_cost.py` (20,000 jobs each way, median of 3",
    "Production Redis": "forkq talks to Redis through redis-py 8.1 or later",
    "TLS": "Certificates are URL query parameters, named as redis-py names",
    "ACL users": "Give each role its own Redis user with the",
    "Sentinel": "names the sentinels and the service; the user",
    "What a failover can undo": "Redis replicates asynchronously: the promoted replica",
    "Performance": "Every figure is a ratio to Ruby Sidekiq 6.4,",
    "Dependencies": "An application that only enqueues imports `redis` and `json` only.",
    "Layout": "The folders of `forkq/` are the process tree of",
}


@pytest.mark.parametrize("heading", FORMER_README)
def test_each_section_of_the_former_readme_is_in_the_docs(heading):
    docs = " ".join(" ".join(p.read_text().split()) for p in DOCS.rglob("*.md"))
    assert FORMER_README[heading] in docs, f"README section {heading!r} is not in docs/"


def test_the_readme_links_point_at_pages_that_exist():
    """The README is read on the forge, outside MkDocs' link check."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link
