"""Launching orloj-ray: Ray settings, the embedded local system, and deployment helpers."""
