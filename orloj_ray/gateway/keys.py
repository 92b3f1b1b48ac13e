"""Provider API keys from the server's environment, as a fallback for ``auth.secretRef``.

Upstream reads keys only through ``auth.secretRef`` (Secret, then ``ORLOJ_SECRET_<NAME>``);
its docs also name the providers' own variables. orloj-ray reads those too, but only for an
endpoint without ``auth.secretRef`` whose base URL is the provider's own service: a manifest
that points ``base_url`` at another host never receives the server's key.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

ENV_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("OPENAI_API_KEY", ("api.openai.com",)),
    "anthropic": ("ANTHROPIC_API_KEY", ("api.anthropic.com",)),
    "azure-openai": ("AZURE_OPENAI_API_KEY", (".openai.azure.com", ".cognitiveservices.azure.com")),
}
"""provider -> (environment variable, hosts it may be sent to; a leading dot = any subdomain)."""

DEFAULT_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}


def env_key_name(provider: str) -> str:
    return ENV_KEYS.get(provider, ("", ()))[0]


def env_api_key(provider: str, base_url: str) -> str:
    """The provider's key from the environment, or ``""`` when none applies to ``base_url``."""
    if provider not in ENV_KEYS:
        return ""
    name, hosts = ENV_KEYS[provider]
    value = os.environ.get(name, "").strip()
    if not value:
        return ""
    url = (base_url or "").strip()
    if url:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https":
            return ""
    else:
        host = DEFAULT_HOSTS.get(provider, "")
    for allowed in hosts:
        if host == allowed or (allowed.startswith(".") and host.endswith(allowed)):
            return value
    return ""
