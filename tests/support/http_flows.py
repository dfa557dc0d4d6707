"""Driving the running stack over HTTP: define a flag, put a setting, read an answer, wait until it shows."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.support.stack import Stack

KEY = "ai.insights.enabled"


def wait_for(probe: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answer(http: httpx.Client, url: str, **params: str) -> dict:
    """The query service's answer, or {} while the flag's definition is not yet projected."""
    response = http.get(url, params=params)
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return response.json()


def ensure_flag(http: httpx.Client, stack: Stack, key: str = KEY) -> None:
    body = {"key": key, "group": key.split(".")[0], "reason": "test setup"}
    response = http.post(f"{stack.command_url}/v1/flags", json=body)
    assert response.status_code in (201, 409), response.text


def put(http: httpx.Client, url: str, **body: object) -> dict:
    response = http.put(url, json={"reason": "e2e", **body})
    assert response.status_code in (200, 201), response.text
    return response.json()
