"""Over real HTTP, every call that reaches the pipeline leaves exactly one audited call (a ``pending`` and an
outcome record), whatever its arguments or name, and ``mcplane audit verify`` passes afterwards."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.audit.conftest import AuditedServer, start_audited_server


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedServer]:
    served = start_audited_server(tmp_path_factory.mktemp("hostile"))
    yield served
    served.server.stop()
    served.verify_cli()


def _answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    return orjson.loads(response.content)


def _code(answer: dict[str, Any]) -> str | None:
    """The mcplane code of an answer: a tool error's ``_meta``, a JSON-RPC error's data, else ``None``."""
    if "error" in answer:
        return (answer["error"].get("data") or {}).get("code")
    result = answer["result"]
    return result["_meta"]["mcplane/error"]["code"] if result.get("isError") else None


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


ARGUMENTS: dict[str, dict[str, Any]] = {
    "a lone surrogate": {"value": "\ud800"},
    "a lone surrogate key": {"\udc00": 1},
    "a 1,001-digit integer": {"value": int("9" * 1001)},
    "a 300-deep array": {"value": _deep(300)},
}


@pytest.mark.parametrize("arguments", list(ARGUMENTS.values()), ids=list(ARGUMENTS))
def test_hostile_arguments_are_audited_and_the_call_is_answered(
    audited: AuditedServer, arguments: dict[str, Any]
) -> None:
    response, pending, outcome = audited.audited(
        lambda: audited.post("tools/call", {"name": "echo", "arguments": arguments})
    )
    answer = _answer(response)
    code = _code(answer)
    assert code != "internal_error", answer  # the audit layer no longer crashes on them
    assert (pending["name"], pending["kind"]) == ("echo", "tool")
    assert (outcome["status"], outcome["error_code"]) == (("ok", None) if code is None else ("error", code))
    assert pending["args_sha256"] == outcome["args_sha256"] != ""
    audited.verify()


def test_a_huge_tool_name_is_recorded_bounded(audited: AuditedServer) -> None:
    name = "x" * 5000
    response, pending, outcome = audited.audited(lambda: audited.post("tools/call", {"name": name, "arguments": {}}))
    assert _code(_answer(response)) == "not_found"
    digest = hashlib.sha256(name.encode()).hexdigest()
    assert pending["name"] == outcome["name"] == f"{'x' * 1024}…[5000 chars, sha256:{digest}]"
    assert (outcome["status"], outcome["error_code"]) == ("error", "not_found")
    audited.verify()


def test_a_read_of_an_unknown_resource_is_audited_once_as_not_found(audited: AuditedServer) -> None:
    response, pending, outcome = audited.audited(lambda: audited.post("resources/read", {"uri": "nope://x"}))
    assert _answer(response)["error"]["message"] == "resource not found"
    assert (pending["kind"], pending["name"]) == ("resource", "nope://x")
    assert (outcome["status"], outcome["error_code"]) == ("error", "not_found")
    audited.verify()


def test_a_path_traversal_read_is_audited_once_as_not_found(audited: AuditedServer) -> None:
    response, _, outcome = audited.audited(lambda: audited.post("resources/read", {"uri": "files://%2e%2e"}))
    assert _answer(response)["error"]["message"] == "resource not found"
    assert (outcome["status"], outcome["error_code"]) == ("error", "not_found")


def test_a_path_traversal_read_is_audited_once_as_not_found_without_metrics(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    served = start_audited_server(
        tmp_path_factory.mktemp("traversal"), MCPLANE__OBSERVABILITY__METRICS__ENABLED="false"
    )
    try:
        for uri in ("files://..", "files://%2e%2e", "files://%2Fetc%2Fpasswd"):
            response, pending, outcome = served.audited(lambda uri=uri: served.post("resources/read", {"uri": uri}))
            assert _answer(response)["error"]["message"] == "resource not found"
            assert (pending["kind"], pending["name"]) == ("resource", uri)
            assert (outcome["status"], outcome["error_code"]) == ("error", "not_found")
    finally:
        served.server.stop()
    served.verify_cli()
