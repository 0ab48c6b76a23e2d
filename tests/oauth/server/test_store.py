"""The authorization server's records: sealed with AES-GCM under rotating keys, bound to their
names, taken once."""

from __future__ import annotations

import anyio

from mcplane.backends.state import MemoryStateStore
from mcplane.oauth.store import OAuthStore, StateCipher

OLD, NEW = b"o" * 32, b"n" * 32


def test_old_keys_open_what_they_sealed_and_nothing_else_does() -> None:
    sealed = StateCipher([OLD]).seal(b'{"a":1}', "oauth:code:x")
    assert StateCipher([NEW, OLD]).open(sealed, "oauth:code:x") == b'{"a":1}'
    assert StateCipher([NEW]).open(sealed, "oauth:code:x") is None  # the old key is gone
    assert StateCipher([NEW, OLD]).open(sealed, "oauth:code:y") is None  # moved under another name
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert StateCipher([OLD]).open(tampered, "oauth:code:x") is None
    assert b'"a"' not in sealed  # not stored in the clear


async def test_a_record_is_taken_once_even_by_concurrent_takers() -> None:
    backend = MemoryStateStore()
    store = OAuthStore(backend, StateCipher([NEW]))
    await store.put("code", "c1", {"sub": "alice"}, 60)
    raw = await backend.get("oauth:code:c1")
    assert raw is not None
    assert b"alice" not in raw
    taken: list[object] = []

    async def take() -> None:
        taken.append(await store.take("code", "c1"))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(take)
    assert [record for record in taken if record is not None] == [{"sub": "alice"}]
