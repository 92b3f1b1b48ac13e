"""orloj-ray: agent infrastructure as code, on Ray.

The domain core (resources, store, graph, governance, gateway, tools, messaging) lives in
this package and imports no Ray; ``Client`` is the Python SDK over the REST API.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Client":  # keep `import orloj_ray` light: httpx loads on first use
        from orloj_ray.client import Client

        return Client
    raise AttributeError(name)
