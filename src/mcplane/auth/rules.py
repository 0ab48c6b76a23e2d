"""Authorization rules as CEL expressions: compiled once when the config loads, evaluated per call.

A rule's ``require`` expression sees five names::

    principal   {subject, roles, scopes, tenant, anonymous, claims}   who calls (claims: the token's)
    call        {kind, name}                      "tool" | "resource" | "prompt", and its name or URI
    args        the call's arguments (a map)      tools and prompts; {} for a resource read
    now         the time of the call (a UTC timestamp: now.getHours(), now.getDayOfWeek(), ...)
    client      {name, version, transport, address}   what the client said about itself
                (clientInfo of initialize or of the 2026-07-28 _meta; "" when it said nothing),
                "stdio" | "http" | "ws", and its IP (behind http.trusted_proxies, the forwarded one)

CEL is the ``common-expression-language`` package (the Rust ``cel-interpreter``; see
docs/authorization.md for why). Compiling checks more than the grammar, so a rule that could
never pass is refused when the file is read rather than denying every call later: names other
than the five above (and comprehension variables and CEL's type names), functions the
interpreter does not have (``lowerAscii``, ``max``, ...), time zones in time accessors (times are
UTC), comprehensions nested inside comprehensions, and expressions over :data:`MAX_SOURCE`
characters. Each refusal says where: ``line L, column C`` of the expression (``column C`` alone
for a one-line expression), 1-based.

**Bounded evaluation.** CEL has no loops, recursion or unbounded functions; what an evaluation
costs is set by the expression and the size of what it reads. Neither CEL library for Python
has a cost limit, so mcplane bounds both sides: the arguments a rule reads are shape-checked
first (``limits.max_argument_nodes``, and ``limits.max_argument_depth`` capped at
:data:`MAX_ARGUMENT_DEPTH`, the interpreter converts nested values recursively), and with no
nested comprehension each evaluation is linear in the arguments for all but the operations
docs/authorization.md lists.

An evaluation that fails (a missing field, a wrong type, an overflow) or gives anything but a
boolean is a denial: :class:`RuleFailed` carries the reason for the log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import cel

if TYPE_CHECKING:
    from mcplane.audit.forwarded import TrustedProxies
    from mcplane.context import Principal

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "MAX_SOURCE",
    "NAMES",
    "CompiledRule",
    "RuleError",
    "RuleFailed",
    "Scope",
    "client_value",
    "compile_rule",
    "principal_value",
]

NAMES = frozenset({"principal", "call", "args", "now", "client"})
"""The names a rule can read."""
MAX_SOURCE = 4096
"""Characters one expression may have."""
MAX_ARGUMENT_DEPTH = 256
"""Deepest arguments a rule reads (the interpreter converts values recursively; far deeper ones
would exhaust its native stack): deeper arguments answer ``invalid_arguments``."""

_TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"})
_TIME_ACCESSORS = (
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
)
_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "type",
        "dyn",
        *_TIME_ACCESSORS,
    }
)
"""The interpreter's native functions (its optional Python ``stdlib`` is not loaded: those run
arbitrary Python per call and include list builders such as ``lists.range``)."""
_MACROS = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(")
_BOUND = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_ZONED = re.compile(r"\.\s*(?:" + "|".join(_TIME_ACCESSORS) + r")\s*\(\s*[^)\s]")
_CLAIMS = re.compile(r"\bclaims\b")
_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_INNER_MESSAGE = re.compile(r'msg: "([^"]*)"')


class RuleError(ValueError):
    """An expression that does not compile; the message starts with where (line/column)."""


class RuleFailed(Exception):
    """An evaluation that failed: the call is denied, the reason is logged (never sent)."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    source: str
    program: cel.Program
    names: frozenset[str]
    """Which of :data:`NAMES` the expression reads."""
    reads_claims: bool
    """Whether it may read ``principal.claims`` (converting claims costs; skipped when not)."""

    @property
    def needs_call_facts(self) -> bool:
        """Reads what only a call has (``args``, ``client``): a list cannot decide it."""
        return "args" in self.names or "client" in self.names


@dataclass(frozen=True, slots=True)
class Scope:
    """What a list of compiled rules reads: the variables to build for one evaluation."""

    names: frozenset[str]
    claims: bool


def _where(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}" if "\n" in source else f"column {column}"


def _at(line: int, column: int, source: str) -> str:
    return f"line {line}, column {column}" if "\n" in source else f"column {column}"


def _mask_strings(source: str) -> str:
    """``source`` with the contents of its string and bytes literals blanked (same length), so
    a scan for names, calls and parentheses never looks inside a literal."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        quote = source[i]
        if quote not in "'\"":
            i += 1
            continue
        start = i
        while start > 0 and source[start - 1] in "rRbB":
            start -= 1
        prefix = source[start:i].lower()
        is_prefix = len(prefix) <= 2 and (start == 0 or not (source[start - 1].isalnum() or source[start - 1] == "_"))
        raw = is_prefix and "r" in prefix
        delimiter = quote * 3 if source.startswith(quote * 3, i) else quote
        j = i + len(delimiter)
        while j < n and not source.startswith(delimiter, j):
            if source[j] == "\\" and not raw:
                j += 1
            elif source[j] == "\n" and len(delimiter) == 1:
                break
            j += 1
        end = min(j, n)
        for k in range(i + len(delimiter), end):
            if out[k] != "\n":
                out[k] = " "
        i = end + len(delimiter)
    return "".join(out)


def _first(pattern: str, masked: str) -> int:
    match = re.search(pattern, masked)
    return match.start() if match else 0


def _check_nesting(source: str, masked: str) -> None:
    opens = {match.end() - 1: match.start() + 1 for match in _MACROS.finditer(masked)}
    stack: list[bool] = []
    for offset, char in enumerate(masked):
        if char == "(":
            macro = offset in opens
            if macro and any(stack):
                raise RuleError(
                    f"{_where(source, opens[offset])}: a comprehension inside another comprehension is not allowed "
                    "(it makes a rule's cost grow with the square of the arguments)"
                )
            stack.append(macro)
        elif char == ")" and stack:
            stack.pop()


def _compile_error(source: str, exc: Exception) -> RuleError:
    text = str(exc)
    found = _POSITION.search(text)
    if found is None:
        return RuleError(f"does not compile: {text.splitlines()[0][:200]}")
    line, column, message = int(found.group(1)), int(found.group(2)), found.group(3)
    inner = _INNER_MESSAGE.search(message)
    if inner is not None:
        message = inner.group(1)
    message = message.split(" expecting ", 1)[0].removeprefix("Syntax error: ")
    return RuleError(f"{_at(line, column, source)}: {message[:200]}")


def compile_rule(source: str) -> CompiledRule:
    """Compile and check one expression; :class:`RuleError` says what is wrong and where."""
    if not source.strip():
        raise RuleError("is empty")
    if len(source) > MAX_SOURCE:
        raise RuleError(f"is longer than {MAX_SOURCE} characters")
    try:
        program = cel.compile(source)
    except ValueError as exc:
        raise _compile_error(source, exc) from None
    masked = _mask_strings(source)
    _check_nesting(source, masked)
    zoned = _ZONED.search(masked)
    if zoned is not None:
        raise RuleError(f"{_where(source, zoned.start() + 1)}: time zones are not supported (now is UTC)")
    bound = {match.group(1) for match in _BOUND.finditer(masked)}
    references = program.references()
    for name in references["variables"]:
        if name not in NAMES and name not in bound and name not in _TYPE_NAMES:
            offset = _first(rf"(?<![\w.]){re.escape(name)}\b", masked)
            readable = ", ".join(sorted(NAMES))
            raise RuleError(f"{_where(source, offset)}: unknown name {name!r} (a rule reads {readable})")
    for name in references["functions"]:
        if name[:1] in "_@!-" or name in _FUNCTIONS:
            continue
        offset = _first(rf"(?<!\w){re.escape(name)}\s*\(", masked)
        raise RuleError(f"{_where(source, offset)}: unknown function {name!r}")
    names = frozenset(references["variables"]) & NAMES
    return CompiledRule(source, program, names, "principal" in names and _CLAIMS.search(masked) is not None)


def scope_of(rules: list[CompiledRule]) -> Scope:
    names: frozenset[str] = frozenset().union(*(rule.names for rule in rules)) if rules else frozenset()
    return Scope(names, any(rule.reads_claims for rule in rules))


def principal_value(principal: Principal, *, claims: bool) -> dict[str, Any]:
    """The ``principal`` a rule sees (lists sorted, so a rule never depends on set order)."""
    value: dict[str, Any] = {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "tenant": principal.tenant,
        "anonymous": principal.anonymous,
    }
    if claims:
        value["claims"] = dict(principal.claims)
    return value


_CLIENT_INFO_META = "io.modelcontextprotocol/clientInfo"


def client_value(context: Any, proxies: TrustedProxies) -> dict[str, str]:
    """The ``client`` a rule sees: ``{name, version, transport, address}`` (``""`` when unknown)."""
    from mcplane.observability.middleware import sdk_request_context

    name = version = ""
    info: Any = context.request_meta.get(_CLIENT_INFO_META)
    request_context = sdk_request_context(context)
    if not isinstance(info, Mapping) and request_context is not None:
        params = getattr(getattr(request_context, "session", None), "client_params", None)
        implementation = getattr(params, "client_info", None)
        if implementation is not None:
            info = {"name": getattr(implementation, "name", ""), "version": getattr(implementation, "version", "")}
    if isinstance(info, Mapping):
        found: Mapping[str, Any] = info  # pyright: ignore[reportUnknownVariableType]
        raw_name, raw_version = found.get("name"), found.get("version")
        name = raw_name[:256] if isinstance(raw_name, str) else ""
        version = raw_version[:256] if isinstance(raw_version, str) else ""
    scope = context.scope
    transport, address = "stdio", ""
    if scope is not None:
        transport = "ws" if scope.get("type") == "websocket" else "http"
        peer = scope.get("client")
        if isinstance(peer, list | tuple) and peer:
            forwarded = ",".join(
                value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == b"x-forwarded-for"
            )
            address = proxies.client_ip(str(peer[0]), forwarded)  # pyright: ignore[reportUnknownArgumentType]
    return {"name": name, "version": version, "transport": transport, "address": address}


def now_value() -> datetime:
    return datetime.now(UTC)


def evaluate(rule: CompiledRule, variables: cel.Context) -> bool:
    """Run ``rule``; :class:`RuleFailed` when it cannot be evaluated or is not a boolean."""
    try:
        result = rule.program.execute(variables)
    except Exception as exc:
        raise RuleFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    except BaseException as exc:  # a panic inside the interpreter (pyo3's PanicException) is a failure too
        if type(exc).__name__ != "PanicException":
            raise
        raise RuleFailed(f"the interpreter failed: {str(exc)[:200]}") from None
    if not isinstance(result, bool):
        raise RuleFailed(f"the rule gave {type(result).__name__}, not a boolean")
    return result
