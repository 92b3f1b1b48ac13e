"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import time

import httpx

TERMINAL = ("Succeeded", "Failed", "DeadLetter")


def wait_for_phase(http: httpx.Client, plural: str, name: str, namespace: str, *, timeout: float = 60.0,
                   phases=TERMINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        obj = http.get(f"/v1/{plural}/{name}", params={"namespace": namespace}).json()
        if (obj.get("status") or {}).get("phase") in phases or time.monotonic() > deadline:
            return obj
        time.sleep(0.2)
