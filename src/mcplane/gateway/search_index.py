"""A BM25 index over tool definitions, for catalog search (see :mod:`mcplane.gateway.search`).

Each tool is one document with four fields, searched with BM25 (tantivy, an embedded Rust search
engine) and weighted (:data:`BOOSTS`): its **name**, its **title**, its **description** and its
**parameters** (names and descriptions of its input schema's top-level properties).

Names are split into words before indexing, as people write them in a query: ``snake_case``,
``kebab-case``, ``camelCase``/``PascalCase``, a ``__`` namespace, dots and slashes
(``github__repos/list-for-authenticated-user`` is ``github repos list for authenticated user``).
Every field then goes through one analyzer (lower case, ASCII folding, English stop words and
stemming: ``repositories`` finds ``repository``), used alike for the query, whose words become
term queries: no query language is parsed, so no input is syntax.

Bounds: a query is cut at :data:`MAX_QUERY_CHARS` characters and :data:`MAX_QUERY_TERMS` distinct
terms; an indexed description at :data:`MAX_TEXT_CHARS`, parameters at :data:`MAX_PARAMETERS`.
A search scores at most the documents holding one of its terms (the catalog's size at most).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import tantivy
from mcp_types import Tool

__all__ = [
    "MAX_PARAMETERS",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "MAX_TEXT_CHARS",
    "ToolIndex",
    "words",
]

MAX_QUERY_CHARS = 512
"""Characters of a query that are read (the rest is ignored)."""
MAX_QUERY_TERMS = 32
"""Distinct terms of a query that are searched (the first ones)."""
MAX_TEXT_CHARS = 4096
"""Characters of a tool's description (and of its parameters' text) that are indexed."""
MAX_PARAMETERS = 64
"""Top-level input parameters of a tool that are indexed."""

BOOSTS: dict[str, float] = {"name": 2.0, "title": 3.0, "description": 0.7, "parameters": 0.3}
"""How much a match in each field weighs: a title (a short summary, when a tool has one) and the
name say what a tool does; a description also says much else, parameters say what it takes."""

_ANALYZER = "mcplane_words"
_WRITER_HEAP = 15_000_000
"""Bytes the index writer may buffer (tantivy's floor is 3 MB per thread; one thread)."""
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\W_]+")


def words(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text``'s words, split as identifiers are written (camelCase, snake_case, kebab-case,
    ``__``, dots, slashes), separated by spaces; at most ``limit`` characters are read."""
    text = unicodedata.normalize("NFKC", text[:limit])
    parts = [part for chunk in _SEPARATORS.split(text) if chunk for part in _CAMEL.split(chunk) if part]
    return " ".join(parts)


def _analyzer() -> Any:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> Any:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("position", stored=True, indexed=False)
    for field in BOOSTS:
        builder.add_text_field(field, stored=False, tokenizer_name=_ANALYZER)
    return builder.build()


def _parameters(schema: Any) -> str:
    """The names and descriptions of a JSON Schema's top-level properties (bounded)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return ""
    parts: list[str] = []
    for name, spec in list(cast("dict[str, Any]", properties).items())[:MAX_PARAMETERS]:
        parts.append(str(name))
        description = spec.get("description") if isinstance(spec, dict) else None
        if isinstance(description, str):
            parts.append(description[:256])
    return words(" ".join(parts))


@dataclass(frozen=True, slots=True)
class Document:
    """What one tool contributes to the index (its fields' words)."""

    name: str
    title: str
    description: str
    parameters: str

    @staticmethod
    def of(tool: Tool) -> Document:
        return Document(
            name=words(tool.name),
            title=words(tool.title or ""),
            description=words(tool.description or ""),
            parameters=_parameters(tool.input_schema),
        )


class ToolIndex:
    """An immutable BM25 index of tool names (build it with :meth:`build`, off the event loop)."""

    def __init__(self, names: Sequence[str], index: Any, analyzer: Any) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self._index = index
        self._analyzer = analyzer
        self._searcher = index.searcher()
        self._schema = index.schema

    @staticmethod
    def build(tools: Sequence[Tool]) -> ToolIndex:
        """Index ``tools`` (CPU work proportional to the catalog: run it in a worker thread)."""
        analyzer = _analyzer()
        index = tantivy.Index(_schema())
        index.register_tokenizer(_ANALYZER, analyzer)
        writer = index.writer(_WRITER_HEAP, 1)
        for position, tool in enumerate(tools):
            document = Document.of(tool)
            writer.add_document(
                tantivy.Document(
                    position=position,
                    name=document.name,
                    title=document.title,
                    description=document.description,
                    parameters=document.parameters,
                )
            )
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return ToolIndex([tool.name for tool in tools], index, analyzer)

    def terms(self, query: str) -> list[str]:
        """The distinct analyzed terms of ``query`` that are searched (bounded)."""
        found: dict[str, None] = {}
        for term in self._analyzer.analyze(words(query, MAX_QUERY_CHARS)):
            found.setdefault(term, None)
            if len(found) == MAX_QUERY_TERMS:
                break
        return list(found)

    def search(self, query: str) -> Iterator[tuple[str, float]]:
        """Tool names matching ``query``, best first, with their scores (every match, lazily
        resolved: a caller stops when it has enough)."""
        terms = self.terms(query)
        if not terms or not self.names:
            return iter(())
        clauses: list[tuple[Any, Any]] = []
        for term in terms:
            for field, boost in BOOSTS.items():
                term_query = tantivy.Query.term_query(self._schema, field, term)
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(term_query, boost)))
        hits = self._searcher.search(tantivy.Query.boolean_query(clauses), len(self.names)).hits
        return self._resolve(hits)

    def _resolve(self, hits: list[tuple[float, Any]]) -> Iterator[tuple[str, float]]:
        searcher = self._searcher
        for score, address in hits:
            position = searcher.doc(address)["position"][0]
            yield self.names[position], score

    def __len__(self) -> int:
        return len(self.names)
