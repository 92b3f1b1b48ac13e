"""Resources of ``orloj.dev/v1``: models of the 15 kinds, normalization to upstream's wire
shape, manifest loading, and the announcement dialect of Agent.

Importable without Ray or FastAPI (pydantic and PyYAML only).
"""

from orloj_ray.resources.dialect import (
    GENERATED_LABEL,
    OWNER_LABEL,
    agent_role_names,
    agent_tool_names,
    expand_agent,
    grant_permission,
    permission_strings,
    upstream_view,
)
from orloj_ray.resources.durations import parse_duration
from orloj_ray.resources.envelope import Metadata, Resource
from orloj_ray.resources.errors import ManifestError, ManifestErrors
from orloj_ray.resources.kinds import API_VERSION, KINDS, KindInfo, kind_info
from orloj_ray.resources.manifest import DocumentError, Manifest, load_path, load_text, parse_document
from orloj_ray.resources.normalize import RESOURCE_MODELS, check, normalize, parse_resource

__all__ = [
    "API_VERSION",
    "GENERATED_LABEL",
    "KINDS",
    "OWNER_LABEL",
    "RESOURCE_MODELS",
    "DocumentError",
    "KindInfo",
    "Manifest",
    "ManifestError",
    "ManifestErrors",
    "Metadata",
    "Resource",
    "agent_role_names",
    "agent_tool_names",
    "check",
    "expand_agent",
    "grant_permission",
    "kind_info",
    "load_path",
    "load_text",
    "normalize",
    "parse_document",
    "parse_duration",
    "parse_resource",
    "permission_strings",
    "upstream_view",
]
