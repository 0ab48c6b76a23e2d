"""One version of a ``fetch_user`` service, for the versions and reload tests.

Run as ``mcplane run tests/gateway/versioned_app.py``. Environment:

* ``USERS_VERSION``: what its answers say (``v2:u1``), so a test sees which version served;
* ``USERS_BUG``: a user id this version crashes on (an ``internal_error`` result: a failure);
* the user id ``nobody`` is ``not_found`` in every version (a caller's mistake).
"""

from __future__ import annotations

import os

import anyio

from mcplane import Plane
from mcplane.errors import NotFound

plane = Plane("users", default_timeout=None)
VERSION = os.environ.get("USERS_VERSION", "v0")


@plane.tool(read_only=True)
def fetch_user(user_id: str) -> str:
    if user_id == "nobody":
        raise NotFound(f"no user {user_id!r}")
    if user_id == os.environ.get("USERS_BUG"):
        raise RuntimeError("this version has a bug")
    return f"{VERSION}:{user_id}"


@plane.tool(read_only=True)
async def slow_fetch_user(user_id: str, gate: str) -> str:
    """Creates ``gate + '.started'``, answers once the file ``gate`` exists."""
    await anyio.Path(gate + ".started").write_text("")
    with anyio.fail_after(60):
        while not await anyio.Path(gate).exists():  # noqa: ASYNC110 - the gate is a file another process writes
            await anyio.sleep(0.02)
    return f"{VERSION}:{user_id}"
