"""What agents connect to: ModelEndpoint, Secret and Memory."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import Spec, Str, Wire, quote, report
from orloj_ray.resources.durations import check_duration
from orloj_ray.resources.envelope import Metadata, Resource
from orloj_ray.resources.tools import url_problem

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "ollama": "http://127.0.0.1:11434",
}


MODEL_PROVIDERS = ("openai", "openai-compatible", "openai_compatible", "anthropic", "azure-openai", "azure_openai",
                   "azure", "ollama", "mock")
"""The providers ``orloj_ray.gateway`` serves, aliases included (tests/test_resources_limits.py
checks the two lists agree)."""
MEMORY_PROVIDERS = ("in-memory", "memory", "inmemory", "pgvector")
"""The providers ``orloj_ray.memory`` serves, aliases included; empty means in-memory."""

# Endpoint options with a meaning (others are kept and ignored): (kind, low, high).
_MODEL_OPTIONS = {
    "max_tokens": ("int", 1, 10_000_000),
    "max_retries": ("int", 0, 10),
    "temperature": ("float", 0.0, 2.0),
    "latency_ms": ("float", 0.0, 600_000.0),
}


def _check_options(options: dict[str, str]) -> None:
    for key, value in options.items():
        field = f"spec.options.{key}"
        if key == "timeout":
            check_duration(value, field, positive=True)
            continue
        if key not in _MODEL_OPTIONS or not value:
            continue
        kind, low, high = _MODEL_OPTIONS[key]
        try:
            number = int(value) if kind == "int" else float(value)
            good = low <= number <= high
        except ValueError:
            good = False
        if not good:
            report(field, f"invalid {field} {quote(value)}: expected {'an integer' if kind == 'int' else 'a number'} "
                          f"from {low} to {high}")


class SecretRefAuth(Wire):
    CAMEL: ClassVar[frozenset[str]] = frozenset({"secret_ref"})

    secret_ref: Str = ""


class ModelEndpointSpec(Spec):
    provider: Str = ""
    """Lower-cased; default ``openai``. Checked when a model is called, not at apply."""
    base_url: Str = ""
    default_model: Str = ""
    options: dict[Str, Str] = {}
    auth: SecretRefAuth = Field(default_factory=SecretRefAuth)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.provider = self.provider.strip().lower() or "openai"
        if self.provider not in MODEL_PROVIDERS:
            report("spec.provider", f"unsupported spec.provider {quote(self.provider)}: expected openai, "
                                    "openai-compatible, anthropic, azure-openai, ollama, or mock")
        self.base_url = self.base_url.strip() or DEFAULT_BASE_URLS.get(self.provider, "")
        if self.base_url and (problem := url_problem(self.base_url, "spec.base_url")):
            report("spec.base_url", problem)
        self.default_model = self.default_model.strip()
        if not self.default_model:
            report("spec.default_model", "spec.default_model is required")
        self.options = {k.strip().lower(): v.strip() for k, v in self.options.items() if k.strip()}
        _check_options(self.options)
        self.auth.secret_ref = self.auth.secret_ref.strip()


class ModelEndpoint(Resource):
    spec: ModelEndpointSpec = Field(default_factory=ModelEndpointSpec)


class SecretSpec(Spec):
    CAMEL: ClassVar[frozenset[str]] = frozenset({"string_data"})

    data: dict[Str, Str] = {}
    """Base64 (standard alphabet, padded) values."""
    string_data: dict[Str, Str] = {}
    """Write-only plain values, folded into ``data`` by ``normalize``."""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        for key, value in self.string_data.items():
            if key.strip():
                self.data[key.strip()] = base64.b64encode(value.encode()).decode()
        self.string_data = {}
        for key, value in self.data.items():
            field = f"spec.data.{key.strip()}"
            if not value.strip():
                report(field, f"{field} is empty")
                continue
            try:  # Go's decoder skips line breaks, then wants padded standard base64
                base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
            except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
                report(field, f"{field} must be valid base64")


class Secret(Resource):
    spec: SecretSpec = Field(default_factory=SecretSpec)


class MemorySpec(Spec):
    """The provider is checked at apply; the memory controller checks the backend itself
    and reports in status."""

    type: Str = ""
    provider: Str = ""
    embedding_model: Str = ""
    endpoint: Str = ""
    auth: SecretRefAuth = Field(default_factory=SecretRefAuth)

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        # upstream: any provider is stored and the controller reports Error (docs/compatibility.md)
        provider = self.provider.strip().lower()
        if provider and provider not in MEMORY_PROVIDERS:
            report("spec.provider", f"unsupported spec.provider {quote(self.provider)}: expected in-memory "
                                    "(alias memory) or pgvector")


class Memory(Resource):
    spec: MemorySpec = Field(default_factory=MemorySpec)
