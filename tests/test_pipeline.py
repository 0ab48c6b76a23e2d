"""The pipeline: named slots in a fixed order, folded around a provider by ``compose``."""

from __future__ import annotations

from typing import Any

import pytest

from mcplane.context import Context
from mcplane.pipeline import SLOTS, Call, CallNext, Middleware, Pipeline, PipelineFrozen
from mcplane.tool_policy import ToolPolicy, ToolSource


def _call(name: str = "tool_a", **arguments: Any) -> Call:
    return Call("tool", name, arguments, Context())


def _recorder(label: str, trace: list[str]) -> Middleware:
    async def middleware(call: Call, call_next: CallNext) -> Any:
        trace.append(f"{label}>")
        result = await call_next(call)
        trace.append(f"<{label}")
        return result

    return middleware


def test_slots_are_in_the_documented_order() -> None:
    assert SLOTS == (
        "errors",
        "drain",
        "tracing",
        "metrics",
        "authenticate",
        "audit",
        "authorize",
        "budget",
        "rate_limit",
        "guard",
        "validate",
        "app",
        "cache",
        "timeout",
    )


async def test_compose_runs_slots_outermost_first_whatever_the_order_they_were_set() -> None:
    trace: list[str] = []
    pipeline = Pipeline()
    for slot in ("timeout", "authorize", "errors", "cache"):
        pipeline.set(slot, _recorder(slot, trace))

    async def provider(call: Call) -> str:
        trace.append("provider")
        return f"result of {call.name}"

    assert await pipeline.compose(provider)(_call()) == "result of tool_a"
    assert trace == [
        "errors>",
        "authorize>",
        "cache>",
        "timeout>",
        "provider",
        "<timeout",
        "<cache",
        "<authorize",
        "<errors",
    ]
    assert pipeline.active == ("errors", "authorize", "cache", "timeout")


async def test_an_empty_pipeline_is_the_provider_itself() -> None:
    async def provider(call: Call) -> str:
        return call.name

    assert Pipeline().compose(provider) is provider


def test_unknown_slot_is_refused_with_the_list_of_slots() -> None:
    refused = r"unknown pipeline slot 'logging'; slots are errors, drain, tracing, .*timeout"
    with pytest.raises(ValueError, match=refused):
        Pipeline().set("logging", _recorder("x", []))


def test_set_replaces_and_none_empties_a_slot() -> None:
    pipeline = Pipeline()
    first, second = _recorder("1", []), _recorder("2", [])
    pipeline.set("cache", first)
    pipeline.set("cache", second)
    assert pipeline.get("cache") is second
    pipeline.set("cache", None)
    assert pipeline.get("cache") is None
    assert pipeline.active == ()
    pipeline.set("cache", None)  # emptying an empty slot is fine


async def test_a_middleware_changes_the_call_with_replace() -> None:
    async def rename(call: Call, call_next: CallNext) -> Any:
        return await call_next(call.replace(name="renamed", arguments={**call.arguments, "added": True}))

    seen: list[Call] = []

    async def provider(call: Call) -> None:
        seen.append(call)

    pipeline = Pipeline()
    pipeline.set("validate", rename)
    original = _call(x=1)
    await pipeline.compose(provider)(original)
    assert seen[0].name == "renamed"
    assert seen[0].arguments == {"x": 1, "added": True}
    assert seen[0].context is original.context
    assert original.name == "tool_a", "calls are immutable"


async def test_a_middleware_can_answer_without_calling_next() -> None:
    async def cached(call: Call, call_next: CallNext) -> str:
        return "from cache"

    async def provider(call: Call) -> str:
        raise AssertionError("the provider must not run")

    pipeline = Pipeline()
    pipeline.set("cache", cached)
    assert await pipeline.compose(provider)(_call()) == "from cache"


async def test_compose_captures_the_slots_at_compose_time() -> None:
    trace: list[str] = []
    pipeline = Pipeline()

    async def provider(call: Call) -> None:
        trace.append("provider")

    chain = pipeline.compose(provider)
    pipeline.set("errors", _recorder("errors", trace))
    await chain(_call())
    assert trace == ["provider"]
    await pipeline.compose(provider)(_call())
    assert trace == ["provider", "errors>", "provider", "<errors"]


def test_call_policy_defaults_to_empty() -> None:
    assert _call().policy == ToolPolicy()
    assert _call().source == ToolSource()


def test_a_frozen_pipeline_refuses_every_edit() -> None:
    pipeline = Pipeline()
    pipeline.set("cache", _recorder("cache", []))
    assert pipeline.freeze() is pipeline
    assert pipeline.frozen
    with pytest.raises(PipelineFrozen, match=r"the pipeline is built and frozen: slot 'audit' cannot be set"):
        pipeline.set("audit", _recorder("audit", []))
    with pytest.raises(PipelineFrozen):
        pipeline.set("cache", None)
    assert pipeline.active == ("cache",)


async def test_own_slots_are_served_over_a_built_pipeline() -> None:
    trace: list[str] = []
    built = Pipeline()
    built.set("errors", _recorder("errors", trace))
    built.set("audit", _recorder("built audit", trace))
    own = Pipeline()
    own.set("audit", _recorder("own audit", trace))
    own.set("cache", _recorder("cache", trace))
    with pytest.raises(ValueError, match="frozen"):
        own.serve_over(built)
    own.serve_over(built.freeze())
    assert own.active == ("errors", "audit", "cache")

    async def provider(call: Call) -> None:
        trace.append("provider")

    await own.compose(provider)(_call())
    assert trace == ["errors>", "own audit>", "cache>", "provider", "<cache", "<own audit", "<errors"]
    own.set("audit", None)  # emptying its own slot shows the built one again
    assert own.get("audit") is built.get("audit")


def test_the_revision_counts_every_change() -> None:
    pipeline = Pipeline()
    before = pipeline.revision
    pipeline.set("cache", _recorder("cache", []))
    pipeline.set("cache", None)
    pipeline.serve_over(Pipeline().freeze())
    assert pipeline.revision == before + 3
