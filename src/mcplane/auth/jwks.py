"""A JSON Web Key Set fetched over HTTP, cached, rotated, and never hammered.

* Keys are fetched on first use and again every ``max_age`` seconds.
* A token whose ``kid`` is unknown triggers **one** refresh (key rotation), shared by every
  request waiting on the same fetch (single flight).
* At most one fetch starts per ``min_refresh_interval``, however many unknown ``kid`` values
  arrive, so a flood of forged tokens cannot turn this server into a load generator against
  the identity provider.
* A failed fetch keeps the keys already known (logged). If a token needs a key that is not
  known and the last fetch failed, the caller gets ``dependency_unavailable`` rather than a
  misleading "unknown key".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import httpx

from mcplane.auth.keys import VerificationKey, key_from_jwk
from mcplane.errors import DependencyUnavailable

__all__ = ["JWKSCache"]

logger = logging.getLogger("mcplane.auth")

MAX_JWKS_BYTES = 1024 * 1024


class JWKSCache:
    def __init__(
        self,
        url: str,
        *,
        allowed_algorithms: frozenset[str],
        max_age: float = 3600.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._allowed = allowed_algorithms
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._client = client
        self._clock = clock
        self._keys: tuple[VerificationKey, ...] = ()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failed = False
        self._inflight: anyio.Event | None = None
        self.fetches = 0
        """Fetches started so far (for metrics and tests)."""

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        return self._keys

    @property
    def fresh(self) -> bool:
        """Fetched less than ``max_age`` ago (so :meth:`keys_for` would not refetch for age)."""
        fetched = self._fetched_at
        return fetched is not None and self._clock() - fetched < self._max_age

    async def keys_for(self, kid: str | None) -> Sequence[VerificationKey]:
        """The keys that may verify a token with this ``kid`` (every key when it has none)."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age:
            await self.refresh()
        found = self._select(kid)
        if not found and kid is not None:
            await self.refresh()
            found = self._select(kid)
        if not found and self._failed:
            raise DependencyUnavailable("the signing keys could not be fetched")
        return found

    def _select(self, kid: str | None) -> list[VerificationKey]:
        if kid is None:
            return list(self._keys)
        return [key for key in self._keys if key.kid == kid]

    async def refresh(self) -> None:
        """Fetch the key set unless a fetch is running (then wait for it) or one ran too recently."""
        inflight = self._inflight
        if inflight is not None:
            await inflight.wait()
            return
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return
        self._attempted_at = now
        done = self._inflight = anyio.Event()
        self.fetches += 1
        try:
            # Shielded: the fetch is shared, so one waiter giving up must not cancel it for all.
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + self._timeout
                await self._fetch()
            if scope.cancelled_caught:
                self._fail("timed out")
        finally:
            self._inflight = None
            done.set()

    async def _fetch(self) -> None:
        try:
            if self._client is not None:
                response = await self._client.get(self.url, timeout=self._timeout)
            else:
                async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                    response = await client.get(self.url)
        except httpx.HTTPError as exc:
            self._fail(type(exc).__name__)
            return
        if response.status_code != 200:
            self._fail(f"HTTP {response.status_code}")
            return
        if len(response.content) > MAX_JWKS_BYTES:
            self._fail("response too large")
            return
        try:
            document: Any = response.json()
        except ValueError:
            self._fail("not JSON")
            return
        keys = self._parse(document)
        if not keys:
            self._fail("no usable keys")
            return
        self._keys = keys
        self._fetched_at = self._clock()
        self._failed = False
        logger.info("JWKS %s: %d key(s) loaded", self.url, len(keys))

    def _parse(self, document: Any) -> tuple[VerificationKey, ...]:
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            return ()
        keys: list[VerificationKey] = []
        seen: set[str] = set()
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            key = key_from_jwk(entry, self._allowed)
            if key is None:
                continue
            if key.kid is not None:
                if key.kid in seen:
                    logger.warning("JWKS %s: duplicate kid %r ignored", self.url, key.kid)
                    continue
                seen.add(key.kid)
            keys.append(key)
        return tuple(keys)

    def _fail(self, why: str) -> None:
        self._failed = True
        logger.warning("JWKS %s: fetch failed (%s); keeping %d known key(s)", self.url, why, len(self._keys))
