"""The config file: YAML read safely, so that a bad or hostile file is one line naming it.

Read once by ``config.load`` in whatever process starts (``forkq start``, ``forkq web``,
``forkqctl``...), before anything else runs. Steps and bounds:
- at most ``MAX_FILE_BYTES`` are read; a bigger file is refused with its size, unread;
- the text must be UTF-8 and YAML read by the safe loader (no Python tags), with libyaml's
  parser where PyYAML has it;
- a key given twice in one mapping is an error;
- a document whose aliases expand to more than ``MAX_NODES`` values, or name a node that
  holds them, is refused before any value is built (a few hundred bytes of aliases of
  aliases would otherwise expand to gigabytes, in memory and in any message that shows it).
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError

#: bytes a config file may hold: real ones hold a few KB, so a bigger file is a mistake (or an
#: attack: 24 MB of YAML took 75 s and 822 MB to read) to refuse before reading it
MAX_FILE_BYTES = 1024 * 1024
#: YAML nodes a file may expand to, each alias counted at the full size of what it names: an
#: "alias bomb" of a few hundred bytes (aliases of aliases) otherwise expands to gigabytes
MAX_NODES = 100_000


def read_file(path: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file; any problem is one line naming the file."""
    import yaml

    try:
        raw = yaml.load(_read_text(path), Loader=_strict_loader())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a config: YAML nested too deep to read") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, "
                          f"not a {type(raw).__name__}")
    return raw


def _read_text(path: str) -> str:
    """The file's text, read only up to ``MAX_FILE_BYTES`` (a pipe or device has no size)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            size = os.fstat(handle.fileno()).st_size
            held = f"{size:,} bytes" if size > MAX_FILE_BYTES else "more bytes than that"
            raise ConfigError(f"{path}: {held}; a config file may hold at most "
                              f"{MAX_FILE_BYTES:,} bytes")
    return data.decode("utf-8")


def _strict_loader() -> type:
    """YAML's safe loader, except that a key given twice in one mapping is an error (the
    silent last-one-wins would hide which value an operator meant), and that a document that
    expands to more than ``MAX_NODES`` nodes through its aliases is refused before it is built."""
    import yaml

    # libyaml's parser, where PyYAML was built with it, reads about ten times faster.
    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                _check_expansion(node, yaml)
            return node

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *anchor" keys may be overridden, as YAML intends
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # the base class reports keys that cannot be keys
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def _check_expansion(root, yaml) -> None:
    """``ComposerError`` when the document, its aliases expanded, holds more than ``MAX_NODES``
    nodes or an alias inside what it names. Each node is sized once (a depth-first walk that
    remembers sizes), so the check is linear in the file, whatever the aliases multiply."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    pending = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        children = [part for item in node.value for part in
                    (item if isinstance(item, tuple) else (item,))] \
            if isinstance(node.value, list) else []
        if children_done:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"its aliases expand to more than {MAX_NODES:,} values",
                    node.start_mark)
        elif id(node) in ancestors:
            raise yaml.composer.ComposerError(None, None, "an alias names a node that holds "
                                              "it", node.start_mark)
        elif id(node) not in sizes:
            ancestors.add(id(node))
            pending.append((node, True))
            pending.extend((child, False) for child in children)


def _one_line(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return " ".join(f"{problem}{where}".split())
