"""Model gateway: provider-neutral completions over pluggable providers."""

from orloj_ray.gateway.base import (
    CompletionReply,
    CompletionRequest,
    Endpoint,
    Message,
    ModelError,
    ModelGateway,
    Provider,
    ToolCall,
    ToolSpec,
    Usage,
)
from orloj_ray.gateway.mock import MockProvider


PROVIDERS = {"mock": MockProvider}
"""Built-in providers by the name a ModelEndpoint's ``spec.provider`` uses."""


def default_gateway() -> ModelGateway:
    """A gateway with every built-in provider registered."""
    return ModelGateway({name: cls() for name, cls in PROVIDERS.items()})


__all__ = [
    "CompletionReply", "CompletionRequest", "Endpoint", "Message", "ModelError", "ModelGateway",
    "MockProvider", "PROVIDERS", "Provider", "ToolCall", "ToolSpec", "Usage", "default_gateway",
]
