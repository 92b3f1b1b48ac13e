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


def default_gateway() -> ModelGateway:
    """A gateway with every built-in provider registered."""
    return ModelGateway({"mock": MockProvider()})


__all__ = [
    "CompletionReply", "CompletionRequest", "Endpoint", "Message", "ModelError", "ModelGateway",
    "MockProvider", "Provider", "ToolCall", "ToolSpec", "Usage", "default_gateway",
]
