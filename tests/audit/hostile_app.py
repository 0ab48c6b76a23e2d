"""A plane served by ``mcplane run`` in the hostile-input and client-address tests.

Its audit layer comes from the environment (``MCPLANE__AUDIT__PATH``, ``MCPLANE__HTTP__TRUSTED_PROXIES``,
...), so ``http.trusted_proxies`` reaches the audit the way a deployment's config does.
"""

from __future__ import annotations

from typing import Any

from mcplane import Plane

plane = Plane("hostile")


@plane.tool()
def echo(value: Any = None) -> str:
    """Takes anything; says only that it ran."""
    return "ran"


@plane.tool()
def add(a: int, b: int) -> int:
    return a + b


@plane.resource("files://{name}")
def file_resource(name: str) -> str:
    return f"content of {name}"


@plane.resource("config://app")
def app_config() -> str:
    return "{}"
