"""The generated parts of the docs site: the configuration reference and the CLI reference.

A MkDocs hook (``mkdocs.yml``: ``hooks``): at build time, a page line that is exactly
``<!-- generated: configuration -->`` or ``<!-- generated: cli -->`` is replaced by text made
from the definitions themselves, so the pages cannot drift from the code:

- configuration: every key of ``forkq.config.PARSERS`` (and the fields of its sections), its
  default from the ``Config`` dataclasses, the environment variables that set it (the names
  ``config.environment_names`` lists), and the comment that documents it in ``forkq.yml``. A key
  that ``forkq.yml`` does not document stops the build.
- cli: the ``--help`` of ``forkq``, ``forkqctl`` and each of their commands, as printed.

``python docs/gen_reference.py configuration|cli`` prints a part (tests/test_docs.py uses the
functions directly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "forkq.yml"
MARKER = re.compile(r"^<!-- generated: (\w+) -->$", re.M)
#: a key line of forkq.yml, possibly commented out as an example (``# processes: 2``)
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<hash>#\s?)?(?P<key>[a-z_]+):(?P<rest>.*)$")


class UndocumentedKey(Exception):
    """A configuration key that forkq.yml does not document."""


@dataclasses.dataclass
class Documented:
    """What forkq.yml says about one key: the comment block above it and its inline comment."""
    block: list[str] = dataclasses.field(default_factory=list)
    inline: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        return [line for line in self.block + self.inline if line.strip()]


def read_comments(text: str) -> tuple[str, dict[str, Documented]]:
    """The file's opening comment and, per dotted key (``web.port``), what documents it.

    A comment block documents the key lines that follow it until the next blank line or
    comment block; a comment indented past its key line continues that line's inline comment;
    ``#  - ...`` lines right under a key are its commented-out example values, not prose."""
    header, docs, block, shared, section, last = [], {}, [], [], "", None
    for line in text.splitlines():
        stripped = line.strip()
        key = KEY_LINE.match(line)
        if not stripped:
            if last is None and block:
                header = block
            block, shared = [], []
        elif key and _is_key(key):
            name = key["key"] if not key["indent"] else f"{section}.{key['key']}"
            if not key["indent"] and not key["hash"]:
                section = key["key"]
            if block:  # a commented-out example key shares the block of the key above it
                shared, block = block, []
            elif not key["hash"]:
                shared = []
            inline = key["rest"].split(" #", 1)[1:] if not key["hash"] else []
            docs.setdefault(name, Documented(list(shared), [s.strip() for s in inline]))
            last = name
        elif stripped.startswith("#") and last and len(line) - len(line.lstrip()) > 12:
            docs[last].inline.append(stripped.lstrip("#").strip())
        elif stripped.startswith("#") and not re.match(r"#\s{2}-|#\s{4}[a-z_]+:", stripped):
            block.append(stripped[2:] if stripped.startswith("# ") else stripped[1:])
    return " ".join(header), docs


def _is_key(match: re.Match) -> bool:
    """A commented ``# key: value`` line counts only for a key forkq has (not prose)."""
    from forkq import config

    return not match["hash"] or (match["key"] in config.PARSERS and not match["indent"])


def configuration() -> str:
    """The configuration reference: a section per key, sections' fields under their section."""
    from forkq import config

    header, docs = read_comments(EXAMPLE.read_text(encoding="utf-8"))
    parts, defaults = [header], config.Config()
    for key in config.PARSERS:
        parts.append(_entry(key, _default(config.Config, defaults, key), docs))
        section = getattr(defaults, key, None)
        if dataclasses.is_dataclass(section):
            for field in dataclasses.fields(section):
                parts.append(_entry(f"{key}.{field.name}", _yaml(getattr(section, field.name)),
                                    docs, parent=key))
    return "\n\n".join(parts) + "\n"


def _entry(key: str, default: str, docs: dict[str, Documented], parent: str | None = None) -> str:
    documented = docs.get(key)
    lines = documented.lines() if documented else []
    if not lines and parent and docs.get(parent):
        lines = [f"Described under [`{parent}`](#{parent})."]
    if not lines:
        raise UndocumentedKey(f"{EXAMPLE.name}: key {key!r} has no comment saying what it is")
    variables = ", ".join(f"`{name}`" for name in environment_variables(key))
    facts = f"Default: `{default}`" + (f"; environment: {variables}" if variables else "")
    level = "####" if parent else "###"
    return f"{level} `{key}` {{#{key}}}\n\n{facts}.\n\n" + _prose(lines)


def _prose(lines: list[str]) -> str:
    """Comment lines as Markdown: prose joined, ``  name   text`` lines as a list."""
    out, paragraph = [], []
    for line in lines:
        item = re.match(r"\s{2,}(\w+)\s{2,}(.*)", line)
        if item:
            out.append(" ".join(paragraph))
            paragraph = []
            out.append(f"- `{item[1]}`: {item[2]}")
        elif out and out[-1].startswith("- ") and line.startswith("    "):
            out[-1] += " " + line.strip()
        else:
            paragraph.append(line.strip())
    out.append(" ".join(paragraph))
    return "\n".join(part if part.startswith("- ") else f"\n{part}\n" for part in out if part)


def _default(cls: type, defaults, key: str) -> str:
    field = next((f for f in dataclasses.fields(cls) if f.name == key), None)
    if field is None:  # a key parsed into another field (as queues sets strict)
        return "–"
    if field.default_factory is not dataclasses.MISSING:
        return "computed at start"
    return _yaml(getattr(defaults, key))


def _yaml(value) -> str:
    """A default as it would be written in forkq.yml."""
    if dataclasses.is_dataclass(value):
        return "{...}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml(getattr(v, "name", v)) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if value == "":
        return '""'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def environment_variables(key: str) -> list[str]:
    """The variables that set ``key``: the names the config's own reader of them accepts."""
    from forkq import config

    variable = "FORKQ_" + key.upper().replace(".", "__")
    found = ["REDIS_URL"] if key == "redis_url" else []
    return found + ([variable] if variable in config.environment_names() else [])


def cli() -> str:
    """The ``--help`` of every command, as ``forkq`` and ``forkqctl`` print it."""
    from forkq import cli as forkq_cli, ctl

    parts = []
    for program, module in (("forkq", forkq_cli), ("forkqctl", ctl)):
        parts.append(_help(program, module.main, []))
        for command in _commands(module.build_parser()):
            parts.append(_help(program, module.main, [command]))
    return "\n".join(parts)


def _commands(parser) -> list[str]:
    import argparse

    for action in parser._actions:  # argparse keeps its subcommands only there
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _help(program: str, main, argv: list[str]) -> str:
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page must not vary
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(argv + ["--help"])
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    title = " ".join([program] + argv)
    return f"## `{title}`\n\n```text\n{out.getvalue().rstrip()}\n```\n"


GENERATORS = {"configuration": configuration, "cli": cli}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: replace each ``<!-- generated: NAME -->`` line by its generated text."""
    return MARKER.sub(lambda match: GENERATORS[match[1]](), markdown)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(GENERATORS[sys.argv[1]]())
