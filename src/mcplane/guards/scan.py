"""Scan a tool result's strings and rewrite the result with the findings masked.

A result's strings are its text content blocks, the text of embedded text resources, and every
string value inside ``structuredContent`` (walked iteratively, so no nesting exhausts the stack;
keys are not scanned, but a value under a key that names a credential, such as ``password``,
counts as one: see :data:`~mcplane.guards.detectors.KEYED`). Images, audio, blobs and ``_meta``
are not scanned.

The strings are scanned together, joined by NUL (no detector matches across one), so a result
of ten thousand short strings costs one pass per detector, not ten thousand; equal strings are
scanned once. Overlapping
findings keep the one that starts first (the longer at the same start); each is replaced by
``[REDACTED:<kind>]``. The result is never changed in place: a masked result is a copy.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents

from mcplane.guards.detectors import KEYED, KINDS, Finder, Hit, Text

__all__ = ["Findings", "Scanner", "mask_result", "scan_result"]

_ORDER = {kind: index for index, kind in enumerate(KINDS)}
_KEYED_MIN = 6


@dataclass(frozen=True, slots=True)
class _Slot:
    text: str
    key: str | None
    """The dict key the string is the value of (structured content), else ``None``."""


@dataclass(frozen=True, slots=True)
class Findings:
    """What a scan found: the hits per string (in slot order) and the count per kind."""

    hits: list[list[Hit]]
    counts: dict[str, int]

    def __bool__(self) -> bool:
        return bool(self.counts)


class Scanner:
    """Runs a set of detectors over strings."""

    def __init__(self, detectors: Sequence[Finder]) -> None:
        self.detectors = list(detectors)
        kinds = {detector.kind for detector in self.detectors}
        self._keyed = [(kind, pattern) for kind, pattern in KEYED.items() if kind in kinds]

    def scan(self, slots: Sequence[_Slot]) -> Findings:
        if not slots:
            return Findings([], {})
        # Equal strings are scanned once: a tool that returns a string answers it twice (the text
        # block and structuredContent's {"result": ...}).
        unique: dict[str, int] = {}
        for slot in slots:
            unique.setdefault(slot.text, len(unique))
        texts = list(unique)
        joined = "\x00".join(texts)
        starts: list[int] = []
        offset = 0
        for text in texts:
            starts.append(offset)
            offset += len(text) + 1
        per_text: list[list[Hit]] = [[] for _ in texts]
        scanned = Text(joined)
        for detector in self.detectors:
            for hit in detector.find(scanned):
                index = bisect.bisect_right(starts, hit.start) - 1
                base = starts[index]
                if hit.end - base <= len(texts[index]):  # never across a separator
                    per_text[index].append(Hit(hit.start - base, hit.end - base, hit.kind))
        per_slot = [list(per_text[unique[slot.text]]) for slot in slots]
        for index, slot in enumerate(slots):
            if slot.key is not None and len(slot.text) >= _KEYED_MIN:
                for kind, pattern in self._keyed:
                    if pattern.match(slot.key):
                        per_slot[index] = [Hit(0, len(slot.text), kind)]
                        break
        counts: Counter[str] = Counter()
        for index, hits in enumerate(per_slot):
            if hits:
                per_slot[index] = kept = _without_overlaps(hits)
                counts.update(hit.kind for hit in kept)
        return Findings(per_slot, dict(counts))


def _without_overlaps(hits: list[Hit]) -> list[Hit]:
    hits.sort(key=lambda hit: (hit.start, hit.start - hit.end, _ORDER.get(hit.kind, len(_ORDER))))
    kept: list[Hit] = []
    end = -1
    for hit in hits:
        if hit.start >= end:
            kept.append(hit)
            end = hit.end
    return kept


def _masked(text: str, hits: list[Hit]) -> str:
    parts: list[str] = []
    position = 0
    for hit in hits:
        parts.append(text[position : hit.start])
        parts.append(f"[REDACTED:{hit.kind}]")
        position = hit.end
    parts.append(text[position:])
    return "".join(parts)


# ------------------------------------------------------------------ walking a result
def _strings(holder: list[Any], copy: bool) -> Iterator[tuple[Any, Any, str | None]]:
    """Every string inside ``holder[0]`` as ``(container, key, dict key or None)``, depth first,
    in document order. With ``copy``, each dict and list on the way is replaced by a shallow copy
    first, so assigning ``container[key]`` rewrites the copy (``holder[0]`` ends up the copied
    root), never the original."""
    stack: list[tuple[Any, Any, str | None]] = [(holder, 0, None)]
    while stack:
        container, key, name = stack.pop()
        item = container[key]
        if isinstance(item, str):
            yield container, key, name
        elif isinstance(item, dict):
            if copy:
                item = container[key] = dict(item)  # pyright: ignore[reportUnknownArgumentType]
            keys: list[Any] = list(item)  # pyright: ignore[reportUnknownArgumentType]
            stack.extend((item, child, child if isinstance(child, str) else None) for child in reversed(keys))
        elif isinstance(item, list):
            if copy:
                item = container[key] = list(item)  # pyright: ignore[reportUnknownArgumentType]
            stack.extend((item, index, None) for index in reversed(range(len(item))))  # pyright: ignore[reportUnknownArgumentType]


def _slots(result: CallToolResult) -> list[_Slot]:
    slots: list[_Slot] = []
    for block in result.content:
        if isinstance(block, TextContent):
            slots.append(_Slot(block.text, None))
        elif isinstance(block, EmbeddedResource) and isinstance(block.resource, TextResourceContents):
            slots.append(_Slot(block.resource.text, None))
    if result.structured_content is not None:
        for container, key, name in _strings([result.structured_content], copy=False):
            slots.append(_Slot(container[key], name))
    return slots


def scan_result(scanner: Scanner, result: CallToolResult) -> Findings:
    return scanner.scan(_slots(result))


def mask_result(result: CallToolResult, findings: Findings) -> CallToolResult:
    """A copy of ``result`` with every finding replaced by ``[REDACTED:<kind>]``."""
    hits = iter(findings.hits)
    content: list[Any] = []
    for block in result.content:
        if isinstance(block, TextContent):
            found = next(hits)
            content.append(block.model_copy(update={"text": _masked(block.text, found)}) if found else block)
        elif isinstance(block, EmbeddedResource) and isinstance(block.resource, TextResourceContents):
            found = next(hits)
            if found:
                resource = block.resource.model_copy(update={"text": _masked(block.resource.text, found)})
                block = block.model_copy(update={"resource": resource})
            content.append(block)
        else:
            content.append(block)
    structured = result.structured_content
    if structured is not None:
        rest = list(hits)
        if any(rest):
            structured = _rewrite(structured, rest)
    return result.model_copy(update={"content": content, "structured_content": structured})


def _rewrite(value: Any, hits: list[list[Hit]]) -> Any:
    holder = [value]
    for (container, key, _), found in zip(_strings(holder, copy=True), hits, strict=True):
        if found:
            container[key] = _masked(container[key], found)
    return holder[0]
