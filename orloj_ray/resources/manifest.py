"""Reading manifests from text, files and directories.

Text is sniffed, not trusted by name or content type: JSON first (an object, a list of
objects, or ``{"items": [...]}``), otherwise YAML with any number of ``---`` documents.
YAML is read with the YAML 1.2 core scalars (only ``true``/``false`` are booleans, no dates,
no ``1:30`` base-60 numbers, no ``0755`` octals, floats kept as text), which is what
upstream's line reader sees as well. Empty documents are skipped but still counted, so a
document's ``index`` is its position in the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orloj_ray.resources.errors import ManifestError, ManifestErrors
from orloj_ray.resources.normalize import normalize

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifest:
    """One normalized document and where it came from."""

    source: str
    """File path (or the name given to ``load_text``)."""
    index: int
    """0-based position of the document in its file (JSON: in the list)."""
    doc: dict[str, Any]
    """The normalized resource (see ``normalize``)."""

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
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring)."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?(?:0|[1-9][0-9]*)", list("-+0123456789")),
    ("tag:yaml.org,2002:merge", r"<<", ["<"]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)


def load_text(text: str, source: str = "<text>") -> list[Manifest]:
    """Load every document of ``text``; raise the first ``ManifestError`` found."""
    manifests, errors = _read(text, source)
    if errors:
        raise errors[0]
    return manifests


def load_path(path: str | os.PathLike[str]) -> list[Manifest]:
    """Load a file, or every ``.yaml``/``.yml``/``.json`` file under a directory (recursively,
    hidden files and directories skipped, in path order).

    All problems of all files are collected into one ``ManifestErrors``, so a caller applies
    either the whole batch or nothing of it.
    """
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    for file in _manifest_files(Path(path), errors):
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ManifestError(f"cannot read file: {exc}", source=str(file)))
            continue
        found, failed = _read(text, str(file))
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


def _read(text: str, source: str) -> tuple[list[Manifest], list[ManifestError]]:
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    try:
        for index, doc in _documents(text, source):
            if doc is None:
                continue
            try:
                manifests.append(Manifest(source, index, normalize(doc, source=source, index=index)))
            except ManifestError as exc:
                errors.append(exc)
    except ManifestError as exc:  # a syntax error ends the file
        errors.append(exc)
    return manifests, errors


def _documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except ValueError:
        pass
    else:
        if isinstance(data, dict) and isinstance(data.get("items"), list) and "kind" not in data:
            data = data["items"]
        yield from enumerate(data if isinstance(data, list) else [data])
        return
    index = 0
    try:
        for doc in yaml.load_all(text, Loader=_Loader):
            yield index, doc
            index += 1
    except yaml.YAMLError as exc:
        raise ManifestError(_yaml_problem(exc), source=source, index=index) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
