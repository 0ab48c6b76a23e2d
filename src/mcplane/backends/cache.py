"""The ``Cache`` Protocol for tool results, its bounded in-memory LRU, and encryption at rest.

Values are bytes with a time to live. Every cache counts what its callers saw in a
:class:`CacheStats` (``hits``, ``misses``, ``sets``, ``evictions``, ``errors``) that the metrics
layer can read. :class:`EncryptedCache` wraps any cache with Fernet; give it several keys,
newest first, to rotate: new entries are written with the first, entries written with an older
key stay readable until they expire.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from mcplane.backends.clock import Clock, monotonic
from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = ["Cache", "CacheStats", "EncryptedCache", "MemoryCache"]


@dataclass(slots=True)
class CacheStats:
    """Counters a metrics exporter reads; they only grow."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    evictions: int = 0
    errors: int = 0
    """Operations that failed (backend unreachable, or an entry that could not be decrypted)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class Cache(Protocol):
    """Bytes by key with a TTL. Every implementation passes ``tests/backends/test_cache_contract.py``."""

    stats: CacheStats

    async def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (> 0), replacing any previous value."""
        ...

    async def delete(self, key: str) -> None: ...


def check_ttl(ttl: float) -> int:
    """TTL in whole milliseconds (at least 1)."""
    if not ttl > 0:
        raise ValueError(f"a cache TTL must be positive, got {ttl}")
    return max(1, round(ttl * 1000))


class MemoryCache:
    """A bounded LRU with per-entry TTL, in process memory. Expired entries are dropped when met."""

    def __init__(self, *, max_entries: int = 10_000, clock: Clock = monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self._clock():
            if entry is not None:
                del self._entries[key]
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[0]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        expires = self._clock() + check_ttl(ttl) / 1000
        self._entries[key] = (bytes(value), expires)
        self._entries.move_to_end(key)
        self.stats.sets += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class EncryptedCache:
    """Any :class:`Cache`, with values encrypted at rest by Fernet (AES-128-CBC + HMAC-SHA256).

    ``keys`` are Fernet keys (``Fernet.generate_key()``), newest first. An entry no key can
    decrypt (a retired key, tampering) counts as an error and a miss, and is deleted.
    """

    def __init__(self, inner: Cache, keys: Sequence[str | bytes]) -> None:
        self.inner = inner
        self.stats = CacheStats()
        self._fernet = _multi_fernet(keys)

    async def get(self, key: str) -> bytes | None:
        from cryptography.fernet import InvalidToken

        token = await self.inner.get(key)
        if token is None:
            self.stats.misses += 1
            return None
        try:
            value = self._fernet.decrypt(token)
        except InvalidToken:
            self.stats.errors += 1
            self.stats.misses += 1
            await self.inner.delete(key)
            return None
        self.stats.hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.inner.set(key, self._fernet.encrypt(value), ttl)
        self.stats.sets += 1

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)


def _multi_fernet(keys: Sequence[str | bytes]) -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet

    if isinstance(keys, str | bytes) or not keys:
        raise ConfigError("cache encryption needs a list of Fernet keys, newest first")
    fernets: list[Fernet] = []
    for position, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Never echo the key itself: it is a secret.
            raise ConfigError(f"cache encryption key #{position} is not a valid Fernet key") from None
    return MultiFernet(fernets)
