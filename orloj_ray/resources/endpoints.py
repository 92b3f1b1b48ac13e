"""What agents connect to: ModelEndpoint, Secret and Memory."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import Spec, Str, Wire, invalid
from orloj_ray.resources.envelope import Metadata, Resource

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "ollama": "http://127.0.0.1:11434",
}


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
        self.base_url = self.base_url.strip() or DEFAULT_BASE_URLS.get(self.provider, "")
        self.default_model = self.default_model.strip()
        if not self.default_model:
            raise invalid("spec.default_model", "spec.default_model is required")
        self.options = {k.strip().lower(): v.strip() for k, v in self.options.items() if k.strip()}
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
                raise invalid(field, f"{field} is empty")
            try:  # Go's decoder skips line breaks, then wants padded standard base64
                base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
            except binascii.Error:
                raise invalid(field, f"{field} must be valid base64") from None


class Secret(Resource):
    spec: SecretSpec = Field(default_factory=SecretSpec)


class MemorySpec(Spec):
    """No rules at apply: the memory controller checks the backend and reports in status."""

    type: Str = ""
    provider: Str = ""
    embedding_model: Str = ""
    endpoint: Str = ""
    auth: SecretRefAuth = Field(default_factory=SecretRefAuth)


class Memory(Resource):
    spec: MemorySpec = Field(default_factory=MemorySpec)
