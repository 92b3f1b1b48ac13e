"""Apply planning, done locally before anything is sent: load, validate, expand and order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orloj_ray.client._docs import copy_doc, name_of
from orloj_ray.errors import InvalidResource

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class PlannedObject:
    """One object ``apply`` will POST, in order."""

    doc: dict
    """The normalized JSON body."""
    source: str
    index: int
    generated_from: str | None = None
    """``agent/<name>`` for objects made by ``expand_agent``."""
    warnings: tuple[dict, ...] = ()
    """What validation warned about (``{"field", "message"}``): unknown fields, ..."""

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.doc.get("metadata") or {}).get("namespace") or "default")

    @property
    def ref(self) -> str:
        """``<kind lower>/<name>``, as apply prints it."""
        return f"{self.kind.lower()}/{self.name}"


@dataclass
class ApplyPlan:
    objects: list[PlannedObject] = field(default_factory=list)
    skipped: list[PlannedObject] = field(default_factory=list)
    """Runnable tasks left out of a directory apply without ``run=True``."""


def manifest_files(path: str | os.PathLike) -> list[Path]:
    """A file itself, or every ``.yaml``/``.yml``/``.json`` under a directory (recursive,
    hidden files and directories skipped, in path order), as ``resources.load_path`` reads them."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InvalidResource(f"{p}: no such file or directory", field="path")
    files = []
    for folder, dirs, names in os.walk(p):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(Path(folder, n) for n in names
                     if n.lower().endswith(MANIFEST_SUFFIXES) and not n.startswith("."))
    return sorted(files)


def plan_apply(paths_or_docs: Any, *, run: bool = False, namespace: str | None = None,
               strict: bool = False) -> ApplyPlan:
    """Load, normalize and expand everything first; raise ``ManifestErrors`` listing every
    bad document of every file (nothing is sent when anything is invalid).

    ``paths_or_docs``: a path, a list of paths, a manifest dict or a list of dicts. Runnable
    Tasks found by walking a directory are skipped unless ``run``; files and dicts given
    directly are always applied. ``namespace`` overwrites ``metadata.namespace``. Objects are
    ordered so that referenced kinds come first (Secrets, ModelEndpoints, Tools, ... Agents,
    AgentSystems, then Tasks), in path order within a kind. ``strict``: unknown fields are
    errors, not warnings (``PlannedObject.warnings``).
    """
    from orloj_ray.resources import ManifestError, ManifestErrors, expand_agent

    plan, errors = ApplyPlan(), []
    for source, is_dir, docs in _sources(paths_or_docs, errors, strict):
        for index, doc, warnings in docs:
            if namespace:
                doc.setdefault("metadata", {})["namespace"] = namespace
            item = PlannedObject(doc=doc, source=source, index=index, warnings=warnings)
            if is_dir and not run and item.kind.lower() == "task" and _task_mode(doc) != "template":
                plan.skipped.append(item)
                continue
            plan.objects.append(item)
            if item.kind.lower() == "agent":
                try:
                    extra = expand_agent(doc)
                except (ManifestError, InvalidResource) as exc:
                    errors.append(exc if isinstance(exc, ManifestError)
                                  else ManifestError(exc.message, source=source, index=index, field=exc.field))
                    continue
                for gen in extra or []:
                    if gen is doc or (gen.get("kind") == doc.get("kind") and name_of(gen) == item.name):
                        continue
                    if namespace:
                        gen.setdefault("metadata", {})["namespace"] = namespace
                    plan.objects.append(PlannedObject(doc=gen, source=source, index=index,
                                                      generated_from=item.ref))
    if errors:
        raise ManifestErrors(errors)
    plan.objects.sort(key=lambda item: _APPLY_RANK.get(item.kind.lower(), len(_APPLY_RANK)))
    return plan


# Referenced kinds go first (stable within a kind: path order), so a runnable Task is only
# created once the system, agents and model it needs exist.
_APPLY_RANK = {k.lower(): i for i, k in enumerate((
    "Secret", "ModelEndpoint", "McpServer", "Tool", "Memory", "AgentRole", "ToolPermission", "AgentPolicy",
    "Agent", "AgentSystem", "Worker", "Task", "TaskSchedule", "TaskWebhook", "ToolApproval"))}


def _sources(paths_or_docs: Any, errors: list,
             strict: bool = False) -> Iterator[tuple[str, bool, list[tuple[int, dict, tuple[dict, ...]]]]]:
    """Yield ``(source, is_dir, [(index, normalized doc, warnings)])`` per file or dict batch,
    collecting manifest errors into ``errors`` instead of stopping at the first bad file."""
    from orloj_ray.resources import ManifestError, ManifestErrors, load_path, normalize

    items = paths_or_docs if isinstance(paths_or_docs, (list, tuple)) else [paths_or_docs]
    docs = []
    for i, d in enumerate(items):
        if isinstance(d, dict):
            warnings: list[dict] = []
            try:
                docs.append((i, normalize(copy_doc(d), source="<input>", index=i, warnings=warnings, strict=strict),
                             tuple(warnings)))
            except ManifestErrors as exc:
                errors.extend(exc.errors)
            except ManifestError as exc:
                errors.append(exc)
    if docs:
        yield "<input>", False, docs
    for item in items:
        if isinstance(item, dict):
            continue
        root = Path(item)
        if not root.exists():
            errors.append(ManifestError("no such file or directory", source=str(root)))
            continue
        for f in manifest_files(root):
            try:
                loaded = load_path(f, strict=strict)
            except ManifestErrors as exc:
                errors.extend(exc.errors)
                continue
            except ManifestError as exc:
                errors.append(exc)
                continue
            yield str(f), root.is_dir(), [(m.index, copy_doc(m.doc), m.warnings) for m in loaded]


def _task_mode(doc: dict) -> str:
    return str((doc.get("spec") or {}).get("mode") or "run").strip().lower()


def strip_server_fields(doc: dict) -> dict:
    """The object without ``status`` and server-owned metadata, for dry-run comparisons."""
    out = copy_doc(doc)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in ("resourceVersion", "generation", "createdAt"):
        meta.pop(key, None)
    return out
