"""The interop matrix: cases every outside client runs against mcplane, and what each must see.

A case is a list of *steps* (client operations in one vocabulary that ``ts_client.mjs``, the
Inspector CLI runner and the Python SDK runner each carry out) and a check over their
*outcomes*. Outcomes are plain JSON, as the client hands them to a program:

- ``{"ok": true, "result": {...}}``: the result as the client returned it (wire field names:
  ``isError``, ``structuredContent``, ``_meta``, ``content``, ...);
- ``{"ok": false, "error": {"code", "message", "data"}}``: the client raised, whether the server
  sent a JSON-RPC error or the client refused the answer itself (a schema violation, say).

Steps name tools, prompts and upstreams as the typed plane does (``tests/interop/typed_app.py``);
:class:`Target` renames them for the gateway (``typed__add``). A case declares what it ``needs``
of a client (progress, cancellation, elicitation, request ``_meta``, several steps reaching one
server process) and runs only where the client has it; the report says which cases a cell left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.interop.typed_app import SECRET

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ERROR_META_KEY = "mcplane/error"
CORRELATION_ID = re.compile(r"^[0-9a-f]{16}$")
INVALID_PARAMS = -32602

Step = dict[str, Any]
Outcome = dict[str, Any]

# What a case may need of a client (a cell runs a case only when its client has all of it).
PROGRESS = "progress"  # hands the caller progress notifications of its call
CANCEL = "cancel"  # can cancel a call in flight
ELICITATION = "elicitation"  # answers the server's elicitation
META = "meta"  # sends a request ``_meta`` of the caller's choice
ONE_SERVER = "one_server"  # successive steps reach one server process (state carries over)
CALLS_UNLISTED = "calls_unlisted"  # sends tools/call for a name the server did not list
ERROR_DATA = "error_data"  # shows a JSON-RPC error's ``data``


@dataclass(frozen=True)
class Target:
    """The server a cell drives: the typed plane itself, or the gateway fronting it."""

    name: str  # "plane" or "gateway"

    @property
    def gateway(self) -> bool:
        return self.name == "gateway"

    def tool(self, name: str, upstream: str = "typed") -> str:
        return f"{upstream}__{name}" if self.gateway else name

    def prompt(self, name: str) -> str:
        return f"typed__{name}" if self.gateway else name

    def __str__(self) -> str:
        return self.name


PLANE = Target("plane")
GATEWAY = Target("gateway")
TARGETS = (PLANE, GATEWAY)


@dataclass(frozen=True)
class Case:
    id: str
    steps: Callable[[Target, str], list[Step]]
    """The steps for a target; the second argument is a token unique to the cell (for keys)."""
    check: Callable[[Cell, list[Outcome]], None]
    needs: frozenset[str] = frozenset()
    targets: tuple[Target, ...] = TARGETS
    xfail: tuple[tuple[Callable[[Cell], bool], str], ...] = ()
    """(cells it fails in, why): a known mcplane bug, run as ``xfail(strict=True)`` in those cells."""

    def xfail_reason(self, cell: Cell) -> str | None:
        return next((reason for applies, reason in self.xfail if applies(cell)), None)


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix: a client, a transport, a protocol era and a target."""

    client: str
    transport: str
    era: str
    target: Target

    def __str__(self) -> str:
        return f"{self.client}-{self.transport}-{self.era}-{self.target}"


def params(
    cells: list[Cell],
    has: Callable[[Cell], frozenset[str]],
    only: Callable[[Cell], tuple[str, ...] | None] = lambda cell: None,
) -> list[Any]:
    """``pytest.param(cell, case)`` for every case each cell runs, with the known bugs marked ``xfail(strict=True)``."""
    out: list[Any] = []
    for cell in cells:
        for case in cases_for(cell.target, has(cell), only(cell)):
            reason = case.xfail_reason(cell)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason is not None else []
            out.append(pytest.param(cell, case, id=f"{cell}-{case.id}", marks=marks))
    return out


# ----------------------------------------------------------------------------------- step builders
def call(name: str, arguments: dict[str, Any] | None = None, **extra: Any) -> Step:
    return {"op": "callTool", "name": name, "arguments": arguments or {}, **extra}


# ----------------------------------------------------------------------------------- checks
def _dump(outcome: Outcome) -> str:
    return json.dumps(outcome, sort_keys=True)[:2000]


def result_of(outcome: Outcome) -> dict[str, Any]:
    """The result of a step the client did not raise on."""
    assert outcome.get("ok") is True, f"the client raised instead of returning a result: {_dump(outcome)}"
    result = outcome["result"]
    assert isinstance(result, dict), _dump(outcome)
    return result


def structured(outcome: Outcome) -> Any:
    """The structured content of a successful tool result."""
    result = result_of(outcome)
    assert result.get("isError") in (False, None), f"the tool failed: {_dump(outcome)}"
    return result.get("structuredContent")


def tool_error(
    outcome: Outcome,
    code: str,
    *,
    retryable: bool,
    retry_after: bool | None = False,
    message: str | None = None,
) -> dict[str, Any]:
    """An ``isError`` tool result the client returned (no schema violation) with a readable error object."""
    result = result_of(outcome)
    assert result.get("isError") is True, f"expected an isError result: {_dump(outcome)}"
    assert result.get("structuredContent") is None, f"an error result never carries structuredContent: {_dump(outcome)}"
    meta = result.get("_meta") or {}
    error = meta.get(ERROR_META_KEY)
    assert isinstance(error, dict), f'no error object in _meta["{ERROR_META_KEY}"]: {_dump(outcome)}'
    assert error["code"] == code, f"expected {code}: {_dump(outcome)}"
    assert isinstance(error["message"], str), error
    assert error["message"], error
    if message is not None:
        assert error["message"] == message, error
    assert error["retryable"] is retryable, error
    assert CORRELATION_ID.match(error["correlation_id"]), error
    if retry_after or (retry_after is None and "retry_after_ms" in error):
        assert isinstance(error.get("retry_after_ms"), int), error
        assert error["retry_after_ms"] > 0, error
    elif retry_after is False:
        assert "retry_after_ms" not in error, error
    texts = [block for block in result.get("content") or [] if block.get("type") == "text"]
    assert len(texts) == 1, f"an error result has one text block: {_dump(outcome)}"
    assert json.loads(texts[0]["text"]) == {"error": error}, "the text block holds the same error object"
    return error


def protocol_error(outcome: Outcome, *, data_code: str | None = "not_found", full: bool = False) -> dict[str, Any]:
    """A JSON-RPC error (code -32602) whose ``data`` names the mcplane code (when the client shows data)."""
    assert outcome.get("ok") is False, f"expected a JSON-RPC error: {_dump(outcome)}"
    error = outcome["error"]
    if error["code"] is None:  # a client that shows only the message (the Inspector 2.x CLI)
        assert re.search(r"unknown|not found", error["message"], re.IGNORECASE), _dump(outcome)
    else:
        assert error["code"] == INVALID_PARAMS, f"expected JSON-RPC {INVALID_PARAMS}: {_dump(outcome)}"
    if data_code is not None and outcome.get("error_data", True):
        data = error.get("data")
        assert isinstance(data, dict), f"the JSON-RPC error has no mcplane error object in data: {_dump(outcome)}"
        assert data.get("code") == data_code, _dump(outcome)
        if full:  # docs/errors.md: data is the whole error object
            assert isinstance(data.get("message"), str), _dump(outcome)
            assert data.get("retryable") is False, _dump(outcome)
            assert CORRELATION_ID.match(str(data.get("correlation_id"))), _dump(outcome)
    return error


def _names(outcome: Outcome, key: str, attribute: str = "name") -> dict[str, dict[str, Any]]:
    return {item[attribute]: item for item in result_of(outcome)[key]}


# ----------------------------------------------------------------------------------- the cases
TYPED_TOOLS = ("add", "get_invoice", "steps", "ask_name", "limited", "hang", "slow", "crash", "pricey", "splurge")


def _check_tools_list(cell: Cell, outcomes: list[Outcome]) -> None:
    target = cell.target
    tools = _names(outcomes[0], "tools")
    for name in TYPED_TOOLS:
        tool = tools.get(target.tool(name))
        assert tool is not None, f"{target.tool(name)} is not listed: {sorted(tools)}"
        schema = tool.get("outputSchema")
        assert isinstance(schema, dict), f"{tool['name']} lists no outputSchema"
        assert schema.get("type") == "object", tool
    invoice = tools[target.tool("get_invoice")]
    assert invoice["inputSchema"]["required"] == ["invoice_id"]
    assert invoice["outputSchema"]["required"] == ["id", "amount_cents", "paid"]
    assert tools[target.tool("add")]["outputSchema"]["properties"] == {"result": {"title": "Result", "type": "integer"}}
    hidden = "typed__report" if target.gateway else "admin_report"
    assert hidden not in tools, "a tool the caller may not call is not listed"


def _check_invoice(cell: Cell, outcomes: list[Outcome]) -> None:
    assert structured(outcomes[0]) == {"id": "inv-7", "amount_cents": 1250, "paid": True}


def _check_add(cell: Cell, outcomes: list[Outcome]) -> None:
    assert structured(outcomes[0]) == {"result": 42}


def _check_invalid_arguments(cell: Cell, outcomes: list[Outcome]) -> None:
    error = tool_error(outcomes[0], "invalid_arguments", retryable=False)
    assert [detail["field"] for detail in error["details"]] == ["b"], error


def _check_not_found(cell: Cell, outcomes: list[Outcome]) -> None:
    tool_error(outcomes[0], "not_found", retryable=False, message="no invoice 'missing-1'")


def _check_rate_limited(cell: Cell, outcomes: list[Outcome]) -> None:
    # The first call of the window passes; when the server is shared, an earlier cell may have had it.
    first = result_of(outcomes[0])
    if first.get("isError"):
        tool_error(outcomes[0], "rate_limited", retryable=True, retry_after=True)
    tool_error(outcomes[1], "rate_limited", retryable=True, retry_after=True)


def _check_timeout(cell: Cell, outcomes: list[Outcome]) -> None:
    tool_error(outcomes[0], "timeout", retryable=True)


def _check_deadline(cell: Cell, outcomes: list[Outcome]) -> None:
    tool_error(outcomes[0], "deadline_exceeded", retryable=False)


def _check_internal_error(cell: Cell, outcomes: list[Outcome]) -> None:
    tool_error(outcomes[0], "internal_error", retryable=False, message="internal error")
    wire = json.dumps(outcomes[0])
    assert SECRET not in wire, "exception text reached the client"
    assert "RuntimeError" not in wire
    assert "Traceback" not in wire


def _check_forbidden(cell: Cell, outcomes: list[Outcome]) -> None:
    tool_error(outcomes[0], "forbidden", retryable=False)


def _check_budget_never_fits(cell: Cell, outcomes: list[Outcome]) -> None:
    # retry_after_ms is the end of the window when one is open (another tool spent from it), else absent.
    error = tool_error(outcomes[0], "budget_exceeded", retryable=False, retry_after=None)
    assert error["details"]["cost"] == 1000, error


def _check_budget_window(cell: Cell, outcomes: list[Outcome]) -> None:
    first = result_of(outcomes[0])
    if first.get("isError"):  # an earlier cell on a shared server spent the window
        tool_error(outcomes[0], "budget_exceeded", retryable=False, retry_after=True)
    tool_error(outcomes[1], "budget_exceeded", retryable=False, retry_after=True)


def _check_dependency_unavailable(cell: Cell, outcomes: list[Outcome]) -> None:
    error = tool_error(outcomes[0], "dependency_unavailable", retryable=True)
    assert error["details"] == {"dependency": "backup"}, error


def _check_upstream_error(cell: Cell, outcomes: list[Outcome]) -> None:
    error = tool_error(outcomes[0], "upstream_error", retryable=False)
    assert error["details"]["upstream_code"] == -32050, error


def _check_circuit_open(cell: Cell, outcomes: list[Outcome]) -> None:
    first = result_of(outcomes[0])
    code = (first.get("_meta") or {}).get(ERROR_META_KEY, {}).get("code")
    if code == "circuit_open":  # an earlier cell on this gateway opened the breaker
        tool_error(outcomes[0], "circuit_open", retryable=True, retry_after=True)
    else:
        tool_error(outcomes[0], "timeout", retryable=True)
    tool_error(outcomes[1], "circuit_open", retryable=True, retry_after=True)


def _check_unknown_tool(cell: Cell, outcomes: list[Outcome]) -> None:
    protocol_error(outcomes[0], full=True)


def _check_unknown_prompt(cell: Cell, outcomes: list[Outcome]) -> None:
    protocol_error(outcomes[0], full=True)


def _check_unknown_resource(cell: Cell, outcomes: list[Outcome]) -> None:
    protocol_error(outcomes[0], full=True)


def _check_progress(cell: Cell, outcomes: list[Outcome]) -> None:
    assert structured(outcomes[0]) == {"done": 3}
    seen = [(p["progress"], p.get("total"), p.get("message")) for p in outcomes[0]["progress"]]
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")], _dump(outcomes[0])


def _check_cancel(cell: Cell, outcomes: list[Outcome]) -> None:
    outcome = outcomes[0]
    assert structured(outcome["started"])["started"] is True, _dump(outcome)
    assert outcome["aborted"]["ok"] is False, f"the cancelled call still answered: {_dump(outcome)}"
    status = structured(outcome)
    assert status["started"] is True, status
    assert status["cancelled"] is True, f"the server never saw the cancellation: {status}"


def _check_elicitation(cell: Cell, outcomes: list[Outcome]) -> None:
    answer = structured(outcomes[0])
    if cell.target.gateway and cell.era == MODERN and answer["action"] == "decline":
        # mcplane.gateway.relay documents that an upstream's question it cannot put to a
        # 2026-07-28 caller is declined for it; the call still answers (and never breaks).
        assert answer == {"action": "decline", "name": None}
    else:
        assert answer == {"action": "accept", "name": "Ada"}


def _check_resources(cell: Cell, outcomes: list[Outcome]) -> None:
    resources = _names(outcomes[0], "resources", "uri")
    assert resources["config://interop"].get("mimeType") == "application/json", resources
    templates = _names(outcomes[1], "resourceTemplates", "uriTemplate")
    assert "invoices://{invoice_id}" in templates, templates
    [static] = result_of(outcomes[2])["contents"]
    assert (static["uri"], static["text"]) == ("config://interop", '{"region": "eu-west-1"}'), static
    [templated] = result_of(outcomes[3])["contents"]
    assert (templated["uri"], templated["text"]) == ("invoices://inv-9", "invoice inv-9"), templated


def _check_prompts(cell: Cell, outcomes: list[Outcome]) -> None:
    target = cell.target
    prompts = _names(outcomes[0], "prompts")
    review = prompts[target.prompt("review")]
    assert [(a["name"], a.get("required")) for a in review["arguments"]] == [("invoice_id", True), ("tone", False)]
    [message] = result_of(outcomes[1])["messages"]
    assert message["role"] == "user"
    assert message["content"] == {"type": "text", "text": "Review invoice inv-1 in a friendly tone."}


CASES: tuple[Case, ...] = (
    Case("tools_list", lambda t, k: [{"op": "listTools"}], _check_tools_list),
    Case(
        "ok_typed_model",
        lambda t, k: [call(t.tool("get_invoice"), {"invoice_id": "inv-7", "paid": True})],
        _check_invoice,
    ),
    Case("ok_typed_int", lambda t, k: [call(t.tool("add"), {"a": 2, "b": 40})], _check_add),
    Case("invalid_arguments", lambda t, k: [call(t.tool("add"), {"a": 1, "b": "two"})], _check_invalid_arguments),
    Case("not_found", lambda t, k: [call(t.tool("get_invoice"), {"invoice_id": "missing-1"})], _check_not_found),
    Case(
        "rate_limited",
        lambda t, k: [call(t.tool("limited")), call(t.tool("limited"))],
        _check_rate_limited,
        needs=frozenset({ONE_SERVER}),
    ),
    Case("timeout", lambda t, k: [call(t.tool("hang"))], _check_timeout),
    Case(
        "deadline_exceeded",
        lambda t, k: [call(t.tool("slow"), {"ms": 5000}, meta={"mcplane/timeout_ms": 50})],
        _check_deadline,
        needs=frozenset({META}),
    ),
    Case("internal_error", lambda t, k: [call(t.tool("crash"))], _check_internal_error),
    Case(
        "forbidden",
        lambda t, k: [call("typed__report", {"period": "q1"}) if t.gateway else call("admin_report")],
        _check_forbidden,
        needs=frozenset({CALLS_UNLISTED}),  # the caller may not call it, so it is not listed to them
    ),
    Case("budget_exceeded", lambda t, k: [call(t.tool("splurge"))], _check_budget_never_fits),
    Case(
        "budget_exceeded_window",
        lambda t, k: [call(t.tool("pricey")), call(t.tool("pricey"))],
        _check_budget_window,
        needs=frozenset({ONE_SERVER}),
    ),
    Case(
        "dependency_unavailable",
        lambda t, k: [call(t.tool("needs_backup"))],
        _check_dependency_unavailable,
        targets=(GATEWAY,),
    ),
    Case("upstream_error", lambda t, k: [call(t.tool("raw_error"))], _check_upstream_error, targets=(GATEWAY,)),
    Case(
        "circuit_open",
        lambda t, k: [call(t.tool("slow", "weak"), {"ms": 5000}), call(t.tool("add", "weak"), {"a": 1, "b": 1})],
        _check_circuit_open,
        needs=frozenset({ONE_SERVER}),
        targets=(GATEWAY,),
    ),
    Case(
        "unknown_tool",
        lambda t, k: [call("no_such_tool")],
        _check_unknown_tool,
        needs=frozenset({CALLS_UNLISTED}),
    ),
    Case(
        "unknown_prompt",
        lambda t, k: [{"op": "getPrompt", "name": "no_such_prompt", "arguments": {}}],
        _check_unknown_prompt,
    ),
    Case(
        "unknown_resource",
        lambda t, k: [{"op": "readResource", "uri": "nowhere://x"}],
        _check_unknown_resource,
    ),
    Case(
        "progress",
        lambda t, k: [call(t.tool("steps"), {"n": 3, "pause_ms": 50}, progress=True)],
        _check_progress,
        needs=frozenset({PROGRESS}),
    ),
    Case(
        "cancel",
        lambda t, k: [
            {
                "op": "cancelTool",
                "name": t.tool("wait_cancel"),
                "arguments": {"key": k},
                "started": {"name": t.tool("cancel_status"), "arguments": {"key": k, "until": "started"}},
                "status": {
                    "name": t.tool("cancel_status"),
                    "arguments": {"key": k, "until": "cancelled", "wait_ms": 2000},
                },
            }
        ],
        _check_cancel,
        needs=frozenset({CANCEL}),
    ),
    Case(
        "elicitation",
        lambda t, k: [{"op": "elicit", "name": t.tool("ask_name")}],
        _check_elicitation,
        needs=frozenset({ELICITATION}),
    ),
    Case(
        "resources",
        lambda t, k: [
            {"op": "listResources"},
            {"op": "listResourceTemplates"},
            {"op": "readResource", "uri": "config://interop"},
            {"op": "readResource", "uri": "invoices://inv-9"},
        ],
        _check_resources,
    ),
    Case(
        "prompts",
        lambda t, k: [
            {"op": "listPrompts"},
            {"op": "getPrompt", "name": t.prompt("review"), "arguments": {"invoice_id": "inv-1", "tone": "friendly"}},
        ],
        _check_prompts,
    ),
)
CASES_BY_ID = {case.id: case for case in CASES}


def cases_for(target: Target, has: frozenset[str], only: tuple[str, ...] | None = None) -> list[Case]:
    """The cases a cell runs: those for its target whose needs its client meets (``only``: a subset by id)."""
    chosen = [c for c in CASES if target in c.targets and c.needs <= has]
    if only is not None:
        chosen = [c for c in chosen if c.id in only]
    return chosen
