"""The REST ingress: ``create_app(store)`` builds the FastAPI app that Ray Serve deploys."""

from serve.app import create_app

__all__ = ["create_app"]
