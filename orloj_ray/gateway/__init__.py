"""Model gateway: provider-neutral completions over pluggable providers.

Providers: ``openai``, ``openai-compatible``, ``anthropic``, ``azure-openai``, ``ollama`` (over
httpx, ``gateway/http.py`` for timeouts, retries and error codes) and the offline ``mock``.
Each also streams (``ModelGateway.complete(..., sink=...)``), with the same reply.
"""

from orloj_ray.gateway.anthropic import AnthropicProvider
from orloj_ray.gateway.base import (
    CompletionReply,
    CompletionRequest,
    Endpoint,
    Message,
    ModelError,
    ModelGateway,
    Provider,
    TokenSink,
    ToolCall,
    ToolSpec,
    Usage,
)
from orloj_ray.gateway.http import HttpProvider, HttpSettings
from orloj_ray.gateway.keys import env_api_key, env_key_name
from orloj_ray.gateway.mock import MockProvider
from orloj_ray.gateway.ollama import OllamaProvider
from orloj_ray.gateway.openai import AzureOpenAIProvider, OpenAICompatibleProvider, OpenAIProvider


PROVIDERS = {
    "mock": MockProvider,
    "openai": OpenAIProvider,
    "openai-compatible": OpenAICompatibleProvider,
    "anthropic": AnthropicProvider,
    "azure-openai": AzureOpenAIProvider,
    "ollama": OllamaProvider,
}
"""Built-in providers by the name a ModelEndpoint's ``spec.provider`` uses."""

PROVIDER_ALIASES = {"openai_compatible": "openai-compatible", "azure_openai": "azure-openai", "azure": "azure-openai"}
"""Upstream's other spellings of provider names."""

KEYLESS_PROVIDERS = frozenset({"mock", "ollama", "openai-compatible"})
"""Providers that run without an API key."""


def canonical_provider(name: str) -> str:
    """The registered name for ``name`` (trimmed, lower-cased, aliases resolved); default ``openai``."""
    key = (name or "").strip().lower() or "openai"
    return PROVIDER_ALIASES.get(key, key)


def default_gateway() -> ModelGateway:
    """A gateway with every built-in provider registered (aliases share their instance)."""
    providers = {name: cls() for name, cls in PROVIDERS.items()}
    providers.update({alias: providers[name] for alias, name in PROVIDER_ALIASES.items()})
    return ModelGateway(providers)


__all__ = [
    "AnthropicProvider", "AzureOpenAIProvider", "CompletionReply", "CompletionRequest", "Endpoint", "HttpProvider",
    "HttpSettings", "KEYLESS_PROVIDERS", "Message", "MockProvider", "ModelError", "ModelGateway", "OllamaProvider",
    "OpenAICompatibleProvider", "OpenAIProvider", "PROVIDERS", "PROVIDER_ALIASES", "Provider", "TokenSink", "ToolCall",
    "ToolSpec", "Usage", "canonical_provider", "default_gateway", "env_api_key", "env_key_name",
]
