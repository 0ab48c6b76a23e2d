"""Key names shared by every backend implementation: namespaces and Redis Cluster hash tags.

Redis Cluster places a key by its *hash tag*: the text between the first ``{`` and the next
``}`` (when that is not empty), else the whole key. A multi-key verb (``hit_all``,
``try_spend_all``) runs as one Lua script, so all its keys must share one tag. Callers choose
the tag by writing it into the logical key (``"{tool:search}:principal:alice"``); a key
without a tag becomes its own tag (``"alice"`` → ``"{alice}"``). The memory backends apply the
same rule, so a call that would fail on a Cluster fails the same way in a unit test.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable

__all__ = ["DEFAULT_PREFIX", "check_prefix", "hash_tag", "same_slot", "tag_for", "tagged"]

DEFAULT_PREFIX = "mcplane:"


def hash_tag(key: str) -> str | None:
    """The hash tag Redis Cluster would use for ``key``, or ``None`` when it has none."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def tagged(key: str) -> str:
    """``key`` with a hash tag: unchanged when it has one, else wrapped in braces."""
    if not key:
        raise ValueError("a backend key must not be empty")
    return key if hash_tag(key) is not None else "{" + key + "}"


def same_slot(keys: Iterable[str]) -> list[str]:
    """Tag every key and check they share one hash tag (one Cluster slot); raise ``ValueError`` if not."""
    result = [tagged(key) for key in keys]
    if not result:
        raise ValueError("at least one key is required")
    tags = {hash_tag(key) for key in result}
    if len(tags) > 1:
        raise ValueError(f"keys of one atomic operation must share a hash tag, got {sorted(t or '' for t in tags)}")
    return result


def check_prefix(prefix: str) -> str:
    """A namespace prefix must not hold braces: they would become the hash tag of every key."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"a key prefix must not contain braces: {prefix!r}")
    return prefix


@functools.lru_cache(maxsize=4096)  # a pure function of short strings, asked on every call
def tag_for(*parts: str | None) -> str:
    """A hash tag naming ``parts`` unambiguously: ``{["tool","search"]}``.

    Parts are JSON-encoded so ``("a:b", "c")`` and ``("a", "b:c")`` never collide; parts that
    hold braces (which would end the tag early) are replaced by their SHA-256.
    """
    text = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    if "{" in text or "}" in text:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return "{" + text + "}"
