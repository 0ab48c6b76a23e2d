"""The gateway's merged catalog: every upstream's tools, prompts, resources and templates under
the names callers see (:func:`merge`, rebuilt whenever an upstream's catalog changes).

* a tool ``echo`` of the upstream whose namespace is ``everything`` is ``everything__echo`` (see
  :data:`~mcplane.gateway.config.SEPARATOR`); prompts and the ``name`` of resources and templates
  are namespaced the same way; the upstream exposed without a namespace (``namespace: false``)
  keeps its own names;
* upstreams are merged in order (:func:`in_order`: the un-namespaced one first, then the others by
  namespace), entries sorted by name;
* a name of the un-namespaced upstream that starts with another upstream's namespace and ``__``
  is hidden (logged): a namespace always means one upstream;
* resource URIs are kept as the upstream wrote them; a URI two upstreams offer goes to the first;
* a versioned tool is listed once, as its default version, once that version's upstream lists it;
  its targets are hidden when ``expose_versions`` is false (see :mod:`mcplane.gateway.versions`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mcp_types import Prompt, Tool

from mcplane.gateway.config import SEPARATOR
from mcplane.tool_policy import ToolPolicy, ToolSource

if TYPE_CHECKING:
    from mcplane.gateway.upstream import Upstream
    from mcplane.gateway.versions import VersionRouter
    from mcplane.pipeline import CallKind

__all__ = ["ListKind", "Merged", "in_order", "merge", "template_pattern"]

logger = logging.getLogger("mcplane.gateway")

ListKind = Literal["tool", "resource", "resource_template", "prompt"]


def _empty_lists() -> dict[ListKind, list[Any]]:
    return {"tool": [], "resource": [], "resource_template": [], "prompt": []}


@dataclass
class Merged:
    """The exposed names, what each one is, and what the list requests answer."""

    tools: dict[str, tuple[Upstream, Tool]] = field(default_factory=lambda: {})
    prompts: dict[str, tuple[Upstream, Prompt]] = field(default_factory=lambda: {})
    uris: dict[str, Upstream] = field(default_factory=lambda: {})
    templates: list[tuple[re.Pattern[str], Upstream]] = field(default_factory=lambda: [])
    template_owners: dict[str, Upstream] = field(default_factory=lambda: {})
    """URI template → the upstream listing it (completions of a template reference go there)."""
    listed: dict[ListKind, list[Any]] = field(default_factory=_empty_lists)
    policies: dict[str, ToolPolicy] = field(default_factory=lambda: {})
    sources: dict[str, ToolSource] = field(default_factory=lambda: {})
    hidden: set[str] = field(default_factory=lambda: set())
    """Version targets not callable under their own names (``expose_versions: false``)."""
    live_versions: set[str] = field(default_factory=lambda: set())
    """Versioned tools whose default version is listed."""

    def knows(self, kind: CallKind, name: str, versions: VersionRouter) -> bool:
        """Whether ``name`` (a tool or prompt name, or a resource URI) is one a caller may call."""
        if kind == "tool":
            if name in versions:
                return name in self.live_versions
            return name in self.tools and name not in self.hidden
        if kind == "prompt":
            return name in self.prompts
        return self.resource_upstream(name) is not None

    def resource_upstream(self, uri: str) -> Upstream | None:
        """The upstream serving ``uri``: the one listing it, else the first whose template matches it."""
        found = self.uris.get(uri)
        if found is not None:
            return found
        for pattern, upstream in self.templates:
            if pattern.fullmatch(uri):
                return upstream
        return None

    def completion_target(self, ref: Any) -> tuple[Upstream, dict[str, Any]] | None:
        """The upstream a ``completion/complete`` reference is for, and the reference in its names."""
        kind = getattr(ref, "type", None)
        if kind == "ref/prompt":
            found = self.prompts.get(ref.name)
            if found is not None:
                return found[0], {"type": "ref/prompt", "name": found[1].name}
        elif kind == "ref/resource":
            owner = self.template_owners.get(str(ref.uri))
            if owner is not None:
                return owner, {"type": "ref/resource", "uri": str(ref.uri)}
        return None


def in_order(upstreams: Iterable[Upstream]) -> list[Upstream]:
    """The un-namespaced upstream first, then the others in namespace order."""
    return sorted(upstreams, key=lambda u: (u.namespace is not None, u.namespace or ""))


def merge(upstreams: Iterable[Upstream], versions: VersionRouter) -> Merged:
    """Every upstream's catalog (in the order given) under the exposed names, and the versioned tools."""
    upstreams = list(upstreams)
    merged = Merged()
    namespaces = {u.namespace for u in upstreams if u.namespace is not None}

    def hidden(upstream: Upstream, name: str, kind: str) -> bool:
        """A name of the un-namespaced upstream that looks like another upstream's is that upstream's."""
        if upstream.namespace is not None or SEPARATOR not in name or name.partition(SEPARATOR)[0] not in namespaces:
            return False
        logger.warning(
            "%s %r of upstream %r is hidden: its name is in another upstream's namespace", kind, name, upstream.name
        )
        return True

    for upstream in upstreams:
        prefix = upstream.prefix
        catalog = upstream.catalog
        for name in sorted(catalog.tools):
            if hidden(upstream, name, "tool"):
                continue
            tool = catalog.tools[name]
            exposed = prefix + name
            merged.tools[exposed] = (upstream, tool)
            merged.listed["tool"].append(tool.model_copy(update={"name": exposed}))
            merged.policies[exposed] = ToolPolicy(timeout=upstream.config.timeout)
            merged.sources[exposed] = ToolSource(
                tool.input_schema, upstream=upstream.name, annotations=tool.annotations
            )
        for name in sorted(catalog.prompts):
            if hidden(upstream, name, "prompt"):
                continue
            prompt = catalog.prompts[name]
            merged.prompts[prefix + name] = (upstream, prompt)
            merged.listed["prompt"].append(prompt.model_copy(update={"name": prefix + name}))
        for resource in sorted(catalog.resources, key=lambda r: (r.name, str(r.uri))):
            uri = str(resource.uri)
            if uri in merged.uris:
                logger.warning("resource %r of %r is hidden by %r's", uri, upstream.name, merged.uris[uri].name)
                continue
            merged.uris[uri] = upstream
            merged.listed["resource"].append(resource.model_copy(update={"name": prefix + resource.name}))
        for template in sorted(catalog.templates, key=lambda t: (t.name, t.uri_template)):
            merged.templates.append((template_pattern(template.uri_template), upstream))
            merged.template_owners.setdefault(template.uri_template, upstream)
            merged.listed["resource_template"].append(template.model_copy(update={"name": prefix + template.name}))
    if versions.tools:
        _add_versions(merged, versions)
    return merged


def _add_versions(merged: Merged, versions: VersionRouter) -> None:
    """List each versioned tool whose default version is known, as that version; hide targets if asked."""
    entries: list[Tool] = []
    for name, state in versions.tools.items():
        if not state.config.expose_versions:
            merged.hidden.update(state.targets.values())
        if name in merged.tools:
            logger.warning("tool %r of upstream %r is hidden by the versioned tool", name, merged.tools[name][0].name)
        default = merged.tools.get(state.targets[state.config.default])
        if default is None:
            continue  # not offered (yet): listed once its upstream's catalog has it
        merged.live_versions.add(name)
        entries.append(default[1].model_copy(update={"name": name}))
        merged.policies[name] = merged.policies[state.targets[state.config.default]]
        merged.sources[name] = merged.sources[state.targets[state.config.default]]
    kept = [tool for tool in merged.listed["tool"] if tool.name not in merged.hidden and tool.name not in versions]
    merged.listed["tool"] = sorted([*kept, *entries], key=lambda tool: tool.name)


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the URIs an RFC 6570 template expands to (level 1-3 operators)."""
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        operator = match.group(1)
        if operator in ("+", "#"):
            parts.append(".*")
        elif operator in ("?", "&"):
            parts.append(r"(?:[?&][^#]*)?")
        else:
            parts.append(r"[^/?#]*")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))
