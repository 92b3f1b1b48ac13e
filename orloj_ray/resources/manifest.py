"""Reading manifests from text, files and directories.

Text is sniffed, not trusted by name or content type: JSON first (an object, a list of
objects, or ``{"items": [...]}``), otherwise YAML with any number of ``---`` documents.
YAML is read with the YAML 1.2 core scalars (only ``true``/``false`` are booleans, no dates,
no ``1:30`` base-60 numbers, no ``0755`` octals, floats kept as text), which is what
upstream's line reader sees as well. Empty documents are skipped but still counted, so a
document's ``index`` is its position in the file.

Reading is bounded whatever the text: nesting deeper than ``MAX_DEPTH`` levels, YAML aliases
that expand a document by more than ``MAX_ALIAS_NODES`` nodes (a "billion laughs"), numbers of
thousands of digits, ``NaN``/``Infinity`` and files over ``MAX_MANIFEST_BYTES`` are refused with
a ``ManifestError`` before anything is built from them. ``parse_document`` is the same reader
for one request body (the REST layer uses it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orloj_ray.resources.errors import ManifestError, ManifestErrors
from orloj_ray.resources.normalize import normalize

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_DEPTH = 64
"""Deepest nesting of maps and lists read (a manifest needs about 8; JSON Schemas in
``input_schema`` a few more)."""
MAX_ALIAS_NODES = 10_000
"""How many nodes YAML aliases may add to a document beyond the nodes written (expanded size
<= written nodes + this). A 454-byte body of nested aliases expands to 4.8 million nodes."""
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest file read: the API's request body limit."""


@dataclass(frozen=True)
class Manifest:
    """One normalized document and where it came from."""

    source: str
    """File path (or the name given to ``load_text``)."""
    index: int
    """0-based position of the document in its file (JSON: in the list)."""
    doc: dict[str, Any]
    """The normalized resource (see ``normalize``)."""
    warnings: tuple[dict[str, str], ...] = ()
    """What ``normalize`` warned about (``{"field", "message"}``): unknown fields, ..."""

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.doc["metadata"]["namespace"]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring), bounded depth
    and bounded alias expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}
        expanded = _expanded_size(node, sizes)
        if expanded > len(sizes) + MAX_ALIAS_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand the document to {expanded} nodes (at most "
                f"{MAX_ALIAS_NODES} more than written); write the repeated parts out", node.start_mark)
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded; ``sizes`` memoizes by node, so this costs
    the written size however much the aliases expand (depth is bounded by the composer)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_size(key, sizes) + _expanded_size(value, sizes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, sizes)
    sizes[id(node)] = total
    return total


def _finite_float(loader: _Loader, node: yaml.Node) -> float:
    value = yaml.SafeLoader.construct_yaml_float(loader, node)
    if value != value or value in (float("inf"), float("-inf")):
        raise yaml.constructor.ConstructorError(None, None, f"{node.value!r} is not a finite number",
                                                node.start_mark)
    return value


def _unsupported_tag(loader: _Loader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(None, None, f"unsupported YAML tag {node.tag!r}: manifests hold "
                                            "maps, lists, strings, numbers, booleans and null", node.start_mark)


# Only what JSON can hold: no !!binary, !!timestamp, !!set, !!omap or !!python tags.
_Loader.yaml_constructors = {tag: fn for tag, fn in yaml.SafeLoader.yaml_constructors.items() if tag in (
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")}
_Loader.yaml_constructors["tag:yaml.org,2002:float"] = _finite_float
_Loader.yaml_constructors[None] = _unsupported_tag
_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?(?:0|[1-9][0-9]*)", list("-+0123456789")),
    ("tag:yaml.org,2002:merge", r"<<", ["<"]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)


class DocumentError(ValueError):
    """Text that is not a readable JSON or YAML document (message says why and where)."""


def load_text(text: str, source: str = "<text>", *, strict: bool = False) -> list[Manifest]:
    """Load every document of ``text``; raise the first ``ManifestError`` found (``load_path``
    reports them all)."""
    manifests, errors = _read(text, source, strict)
    if errors:
        raise errors[0]
    return manifests


def load_path(path: str | os.PathLike[str], *, strict: bool = False) -> list[Manifest]:
    """Load a file, or every ``.yaml``/``.yml``/``.json`` file under a directory (recursively,
    hidden files and directories skipped, in path order).

    All problems of all files are collected into one ``ManifestErrors``, so a caller applies
    either the whole batch or nothing of it. ``strict``: unknown fields are errors.
    """
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    for file in _manifest_files(Path(path), errors):
        try:
            if file.stat().st_size > MAX_MANIFEST_BYTES:
                errors.append(ManifestError(f"file too large: {file.stat().st_size} bytes, limit is "
                                            f"{MAX_MANIFEST_BYTES}", source=str(file)))
                continue
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ManifestError(f"cannot read file: {exc}", source=str(file)))
            continue
        found, failed = _read(text, str(file), strict)
        manifests.extend(found)
        errors.extend(failed)
    if errors:
        raise ManifestErrors(errors)
    return manifests


def _manifest_files(root: Path, errors: list[ManifestError]) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        errors.append(ManifestError("no such file or directory", source=str(root)))
        return []
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(Path(folder, n) for n in names if n.endswith(MANIFEST_SUFFIXES) and not n.startswith("."))
    return sorted(files)


def _read(text: str, source: str, strict: bool = False) -> tuple[list[Manifest], list[ManifestError]]:
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    try:
        for index, doc in _documents(text):
            if doc is None:
                continue
            warnings: list[dict[str, str]] = []
            try:
                normalized = normalize(doc, source=source, index=index, warnings=warnings, strict=strict)
            except ManifestErrors as exc:
                errors.extend(exc.errors)
            except ManifestError as exc:
                errors.append(exc)
            else:
                manifests.append(Manifest(source, index, normalized, tuple(warnings)))
    except _DocumentAt as exc:  # a syntax error ends the file
        errors.append(ManifestError(str(exc.error), source=source, index=exc.index))
    return manifests, errors


class _DocumentAt(Exception):
    def __init__(self, error: DocumentError, index: int):
        self.error, self.index = error, index


def parse_document(text: str) -> Any:
    """The one JSON or YAML document of ``text`` (JSON tried first), read as ``load_text``
    reads each document; ``DocumentError`` when it is not one."""
    json_doc = _json(text)
    if json_doc is not _NOT_JSON:
        return json_doc
    try:
        return _plain_keys(yaml.load(text, Loader=_Loader))
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise DocumentError(_yaml_problem(exc)) from None


_NOT_JSON = object()


def _reject_constant(name: str) -> Any:
    raise DocumentError(f"invalid JSON: {name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise DocumentError(f"invalid JSON: {text} is too large a number")
    return value


def _json(text: str) -> Any:
    """The JSON value of ``text``, ``_NOT_JSON`` when it is not JSON syntax at all."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except json.JSONDecodeError:
        return _NOT_JSON
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise DocumentError(f"invalid JSON: {_number_problem(exc)}") from None
    if _depth(value) > MAX_DEPTH:
        raise DocumentError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def _plain_keys(value: Any) -> Any:
    """Map keys as strings, as in JSON (YAML allows ``1:`` or ``true:`` as keys)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_keys(v) for v in value]
    return value


def _documents(text: str) -> Iterator[tuple[int, Any]]:
    try:
        data = _json(text)
    except DocumentError as exc:
        raise _DocumentAt(exc, 0) from None
    if data is not _NOT_JSON:
        if isinstance(data, dict) and isinstance(data.get("items"), list) and "kind" not in data:
            data = data["items"]
        yield from enumerate(data if isinstance(data, list) else [data])
        return
    index = 0
    try:
        for doc in yaml.load_all(text, Loader=_Loader):
            yield index, _plain_keys(doc)
            index += 1
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise _DocumentAt(DocumentError(_yaml_problem(exc)), index) from None


def _number_problem(exc: Exception) -> str:
    if "digits" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


def _yaml_problem(exc: Exception) -> str:
    if not isinstance(exc, yaml.YAMLError):
        return f"invalid YAML: {_number_problem(exc)}"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
