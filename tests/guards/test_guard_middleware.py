"""The guard slot in a real plane (the SDK client in process): masking text and structured
results, refusing, counting, and the notes the audit slot reads."""

from __future__ import annotations

from typing import Any

from mcp import Client
from prometheus_client import REGISTRY
from pydantic import BaseModel

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.notes import notes_of
from mcplane.pipeline import Call, CallNext
from tests.conftest import error_of

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBk\n-----END EC PRIVATE KEY-----"
CONFIG = {
    "guards": {
        "tools": {
            "*": {"mask": ["personal", "credentials"], "refuse": ["private_key"]},
            "raw_*": {},
            "strict_*": {"refuse": ["all"]},
        }
    }
}


class Profile(BaseModel):
    name: str
    email: str
    phones: list[str]


def _plane(config: dict[str, Any] | None = None) -> Plane:
    plane = Plane("guarded", config=PlaneConfig.model_validate(config or CONFIG))

    @plane.tool()
    def profile() -> Profile:
        return Profile(name="Alice", email="alice@example.com", phones=["+44 20 7946 0958", "n/a"])

    @plane.tool()
    def notes() -> str:
        return "reach alice@example.com; the deploy key is ghp_0123456789abcdefghijABCDEFGHIJ012345"

    @plane.tool()
    def leak() -> str:
        return f"here you go: {PEM} and alice@example.com"

    @plane.tool()
    def raw_notes() -> str:
        return "reach alice@example.com"

    @plane.tool()
    def strict_notes() -> str:
        return "reach alice@example.com"

    return plane


def _hits(kind: str, action: str) -> float:
    return REGISTRY.get_sample_value("mcplane_guard_hits_total", {"kind": kind, "action": action}) or 0.0


async def test_text_and_structured_results_are_masked() -> None:
    async with Client(_plane().sdk) as client:
        profile = await client.call_tool("profile", {})
        notes = await client.call_tool("notes", {})
    assert profile.is_error is False
    assert profile.structured_content == {
        "name": "Alice",
        "email": "[REDACTED:email]",
        "phones": ["[REDACTED:phone]", "n/a"],
    }
    assert "alice@example.com" not in repr(profile)
    assert "+44 20" not in repr(profile)
    assert notes.content[0].text == (  # type: ignore[union-attr]
        "reach [REDACTED:email]; the deploy key is [REDACTED:github_token]"
    )


async def test_a_refused_result_says_nothing_of_what_was_found() -> None:
    before = _hits("private_key", "refuse")
    async with Client(_plane().sdk) as client:
        leak = await client.call_tool("leak", {})
        strict = await client.call_tool("strict_notes", {})
    for result in (leak, strict):
        error = error_of(result)
        assert (error["code"], error["retryable"]) == ("forbidden", False)
        assert error["message"] == "the tool's result was withheld by an output guard"
        assert "details" not in error
        shown = repr(result)
        for secret in ("PRIVATE KEY", "MHcCAQEEIBk", "alice@", "private_key", "email"):
            assert secret not in shown
    assert _hits("private_key", "refuse") == before + 2  # the text and its structured mirror


async def test_a_glob_can_turn_guards_off() -> None:
    async with Client(_plane().sdk) as client:
        raw = await client.call_tool("raw_notes", {})
    assert raw.content[0].text == "reach alice@example.com"  # type: ignore[union-attr]


async def test_findings_are_counted_and_noted_for_the_audit_by_kind_and_count() -> None:
    seen: list[dict[str, Any]] = []

    async def audit(call: Call, call_next: CallNext) -> Any:
        try:
            return await call_next(call)
        finally:
            seen.append(dict(notes_of(call.context)))

    plane = _plane()
    plane.pipeline.set("audit", audit)  # where the audit slot reads them
    email, phone = _hits("email", "mask"), _hits("phone", "mask")
    async with Client(plane.sdk) as client:
        await client.call_tool("profile", {})
        await client.call_tool("leak", {})
        await client.call_tool("raw_notes", {})
    assert seen == [
        {"guards": {"email": 2, "phone": 2}, "guard_action": "mask"},  # the text mirror counts too
        {"guards": {"email": 2, "private_key": 2}, "guard_action": "refuse"},  # text and {"result": ...}
        {},
    ]
    assert _hits("email", "mask") == email + 4  # each finding under its configured action
    assert _hits("phone", "mask") == phone + 2


async def test_metrics_off_still_guards() -> None:
    plane = _plane({**CONFIG, "observability": {"metrics": {"enabled": False}}})
    async with Client(plane.sdk) as client:
        notes = await client.call_tool("notes", {})
    assert "[REDACTED:email]" in notes.content[0].text  # type: ignore[union-attr]
