"""The injection scan of upstream tool definitions: text a model reads that an upstream can abuse.

A tool's description, title and schemas go straight into the model's context, so an upstream (or
whoever took it over) can hide instructions there ("tool poisoning"). :func:`scan` walks a
definition and reports each :class:`Finding`:

* ``invisible_unicode``: zero-width and other format characters (U+200B, U+2060, U+FEFF, the tag
  block U+E0000..U+E007F, ...): text a person reviewing the tool does not see but a model reads;
* ``bidi_control``: bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069, ...)
  that make text display in another order than it is read;
* ``model_instruction``: phrases aimed at the model rather than at a caller ("ignore previous
  instructions", "do not tell the user", "system prompt", ...), matched after the text is
  NFKC-normalized and stripped of invisible characters, so those cannot split a phrase;
* ``hidden_tag``: pseudo-markup that tool-poisoning payloads use to set text apart
  (``<IMPORTANT>``, ``<hidden>``, ``<system>``, HTML comments);
* ``exfil_link``: a markdown image (a client that renders it fetches the URL by itself) or a URL
  whose query carries a placeholder for data to fill in (``?d={secret}``);
* ``oversized``: more text than ``max_bytes`` or deeper nesting than ``max_depth``: the rest is
  not scanned, and a definition that large is itself a signal.

Bounded for hostile input: the walk is iterative (no recursion to blow), stops descending at
``max_depth``, scans at most ``max_bytes`` of text per tool and reports at most
:data:`MAX_FINDINGS`. A finding never echoes the text: its ``detail`` is a code point, the
matched phrase cut to :data:`DETAIL_CHARS` characters, or a host name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DETAIL_CHARS", "KINDS", "MAX_FINDINGS", "Finding", "scan", "scanned_fields"]

KINDS = ("invisible_unicode", "bidi_control", "model_instruction", "hidden_tag", "exfil_link", "oversized")
MAX_FINDINGS = 20
"""Findings reported per tool at most (one more kind of trouble is not more information)."""
DETAIL_CHARS = 40

_BIDI = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)],
)
_INVISIBLE_EXTRA = frozenset([0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, *range(0xFE00, 0xFE10)])
"""Not of category Cf but rendered as nothing: Hangul fillers, the grapheme joiner, variation selectors."""

_INSTRUCTION = re.compile(
    r"\b(?:"
    r"(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+)?"
    r"(?:previous|prior|above|earlier|preceding|other)\s+(?:instructions?|prompts?|rules?|messages?|context)"
    r"|do\s+not\s+(?:tell|inform|mention\s+(?:this|it)\s+to|reveal\s+(?:this|it)\s+to|alert)\s+the\s+user"
    r"|(?:don'?t|never)\s+(?:tell|inform|show)\s+the\s+user"
    r"|without\s+(?:telling|informing|asking)\s+the\s+user"
    r"|(?:reveal|print|output|repeat|show)\s+(?:your|the)\s+system\s+prompt"
    r"|you\s+are\s+now\s+(?:a|an|in)\b"
    r"|new\s+instructions?\s*:"
    r"|(?:before|after)\s+(?:using|calling)\s+(?:this|any)\s+tool,?\s+(?:you\s+must\s+)?(?:read|send|pass|include)"
    r"|(?:read|cat|send|upload|include)\s+(?:the\s+)?(?:contents?\s+of\s+)?~?/?\.?(?:ssh|aws|env|netrc|npmrc)\b"
    r"|id_rsa\b"
    r")",
    re.IGNORECASE,
)
_TAG = re.compile(
    r"<\s*/?\s*(?:important|hidden|secret|system|instructions?|admin|assistant|sys|inst|context)\b[^>]{0,64}>"
    r"|<!--|\[/?INST\]|<\|im_start\|>",
    re.IGNORECASE,
)
_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]{0,200}\]\(\s*<?(https?://[^)\s>]{1,2048})", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s)\"'<>\]]{1,2048}", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"[{<$]|%7B|%3C|%24", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    """What was found, where (``inputSchema.properties.q.description``), and a short, safe detail."""

    kind: str
    path: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


def scanned_fields(definition: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The parts of a canonical definition a model reads (see :func:`mcplane.gateway.integrity.definition_of`)."""
    return [
        (key, definition[key])
        for key in ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
        if key in definition
    ]


def scan(definition: Mapping[str, Any], *, max_bytes: int = 65_536, max_depth: int = 32) -> list[Finding]:
    """Every finding in ``definition`` (a tool's canonical definition), in walk order, bounded."""
    findings: list[Finding] = []
    budget = max_bytes
    oversized: list[str] = []
    stack: list[tuple[str, Any, int]] = [(path, value, 0) for path, value in reversed(scanned_fields(definition))]
    while stack and len(findings) < MAX_FINDINGS:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            if budget <= 0:
                oversized.append(path)
                break
            text = value[:budget]
            budget -= len(text)
            findings.extend(_scan_text(text, path))
            if len(text) < len(value):
                oversized.append(path)
                break
            continue
        if not isinstance(value, Mapping | list):
            continue
        if depth >= max_depth:
            oversized.append(path)
            continue
        if isinstance(value, list):
            items: list[tuple[str, Any]] = [(f"{path}[{index}]", item) for index, item in enumerate(value)]  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        else:
            items = []
            for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
                child = f"{path}.{key}"
                items.append((f"{child}(key)", str(key)))  # pyright: ignore[reportUnknownArgumentType]
                items.append((child, item))
        stack.extend((child, item, depth + 1) for child, item in reversed(items))
    if oversized and len(findings) < MAX_FINDINGS:
        findings.append(Finding("oversized", oversized[0], f"over {max_bytes} bytes or {max_depth} levels"))
    return findings[:MAX_FINDINGS]


def _scan_text(text: str, path: str) -> list[Finding]:
    found: list[Finding] = []
    invisible: str | None = None
    bidi: str | None = None
    if not text.isascii():
        for char in text:
            point = ord(char)
            if point in _BIDI:
                bidi = bidi or f"U+{point:04X}"
            elif point in _INVISIBLE_EXTRA or unicodedata.category(char) == "Cf":
                invisible = invisible or f"U+{point:04X}"
            if invisible and bidi:
                break
        if invisible:
            found.append(Finding("invisible_unicode", path, invisible))
        if bidi:
            found.append(Finding("bidi_control", path, bidi))
        text = _visible(text)
    match = _INSTRUCTION.search(text)
    if match is not None:
        found.append(Finding("model_instruction", path, _cut(match.group(0))))
    match = _TAG.search(text)
    if match is not None:
        found.append(Finding("hidden_tag", path, _cut(match.group(0))))
    link = _exfil_host(text)
    if link is not None:
        found.append(Finding("exfil_link", path, link))
    return found


def _visible(text: str) -> str:
    """``text`` as a model would read its words: NFKC, format and bidi characters removed."""
    normal = unicodedata.normalize("NFKC", text)
    return "".join(
        c for c in normal if not (ord(c) in _BIDI or ord(c) in _INVISIBLE_EXTRA or unicodedata.category(c) == "Cf")
    )


def _exfil_host(text: str) -> str | None:
    match = _MARKDOWN_IMAGE.search(text)
    if match is not None:
        return _host(match.group(1))
    for url in _URL.finditer(text):
        query = urlsplit(url.group(0)).query if "?" in url.group(0) else ""
        if query and _PLACEHOLDER.search(query):
            return _host(url.group(0))
    return None


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        host = "?"
    return _cut(host)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"
