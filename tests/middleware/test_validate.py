"""The validate slot: arguments are bounded before any schema runs, schemas run on a bounded
engine, and an ``invalid_arguments`` answer lists a bounded number of problems."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from mcp import Client
from pydantic import BaseModel

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.errors import ConfigError, InvalidArguments
from mcplane.middleware.validate import ArgumentLimits, ValidateMiddleware, bounded_details, check_shape
from tests.conftest import error_of


class Order(BaseModel):
    items: list[str]


def _plane(config: dict[str, Any] | None = None) -> Plane:
    plane = Plane("validate", config=PlaneConfig.model_validate(config or {}))

    @plane.tool()
    def place(order: Order) -> int:
        return len(order.items)

    @plane.tool(input_schema={"type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}}})
    def spell(word: str) -> str:
        return word

    @plane.tool(
        input_schema={
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^(?=[A-Z])[A-Z0-9]{3}$"}},
            "required": ["code"],
        }
    )
    def lookup(code: str) -> str:
        return code

    return plane


# ------------------------------------------------------------------------------ shape
def test_check_shape_counts_values_and_stops_at_the_limits() -> None:
    limits = ArgumentLimits(max_nodes=10, max_depth=3)
    assert check_shape({"a": [1, 2], "b": {"c": "d"}}, limits) == 5
    with pytest.raises(InvalidArguments) as too_many:
        check_shape({"a": list(range(10))}, limits)
    assert too_many.value.details == [
        {"field": "(arguments)", "message": "hold more than 10 values", "type": "too_large"}
    ]
    assert check_shape({"a": [[1]]}, limits) == 3
    with pytest.raises(InvalidArguments) as too_deep:
        check_shape({"a": [[[1]]]}, limits)
    assert too_deep.value.details[0]["type"] == "too_deep"


def test_bounded_details_says_how_many_more() -> None:
    details = [{"field": str(i), "message": "m", "type": "t"} for i in range(5)]
    assert bounded_details(details, 5, 5) == details
    shown = bounded_details(details, 500, 2)
    assert shown[:2] == details[:2]
    assert shown[2] == {"field": "(more)", "message": "498 more problems not listed", "type": "truncated"}
    assert bounded_details(details, None, 2)[2]["message"] == "more problems not listed"


# ------------------------------------------------------------------------------ through a plane
async def test_a_huge_wrong_array_answers_a_small_bounded_error() -> None:
    """90,000 wrong items (under the value limit): 20 problems and a count, not 90,000 entries."""
    async with Client(_plane().sdk, mode="2026-07-28") as client:
        result = await client.call_tool("place", {"order": {"items": list(range(90_000))}})
    error = error_of(result)
    assert error["code"] == "invalid_arguments"
    details = error["details"]
    assert len(details) == 21
    assert details[0] == {"field": "order.items.0", "message": "Input should be a valid string", "type": "string_type"}
    assert details[-1] == {"field": "(more)", "message": "89980 more problems not listed", "type": "truncated"}
    assert len(orjson.dumps(result.model_dump(by_alias=True, exclude_none=True))) < 8_000


async def test_a_few_wrong_items_through_the_sdk_are_all_listed() -> None:
    async with Client(_plane().sdk, mode="2026-07-28") as client:
        result = await client.call_tool("place", {"order": {"items": [1, "ok", 3]}})
    fields = [detail["field"] for detail in error_of(result)["details"]]
    assert fields == ["order.items.0", "order.items.2"]


async def test_more_values_than_the_configured_limit_are_refused_before_validation() -> None:
    plane = _plane({"limits": {"max_argument_nodes": 50, "max_argument_depth": 4}})
    async with Client(plane.sdk, mode="2026-07-28") as client:
        fits = await client.call_tool("place", {"order": {"items": ["x"] * 40}})
        assert fits.structured_content == {"result": 40}
        over = await client.call_tool("place", {"order": {"items": ["x"] * 60}})
        assert error_of(over)["message"] == "the arguments hold more than 50 values"
        deep = await client.call_tool("place", {"order": {"items": [[["x"]]]}})
        assert error_of(deep)["details"][0]["type"] == "too_deep"


async def test_a_catastrophic_pattern_cannot_stall_the_server() -> None:
    """``^(a+)+$`` on 40 a's and a '!' backtracks for hours in Python's ``re``; here it just fails."""
    async with Client(_plane().sdk, mode="2026-07-28") as client:
        refused = await client.call_tool("spell", {"word": "a" * 40 + "!"})
        served = await client.call_tool("spell", {"word": "a" * 40})
    error = error_of(refused)
    assert error["details"] == [{"field": "word", "message": "pattern must satisfy '^(a+)+$'", "type": "pattern"}]
    assert served.structured_content == {"result": "a" * 40}


async def test_lookaround_patterns_still_work_and_nothing_echoes_the_value() -> None:
    async with Client(_plane().sdk, mode="2026-07-28") as client:
        assert (await client.call_tool("lookup", {"code": "A12"})).structured_content == {"result": "A12"}
        refused = await client.call_tool("lookup", {"code": "1AB-secret"})
        missing = await client.call_tool("lookup", {})
    assert "1AB-secret" not in orjson.dumps(error_of(refused)).decode()
    assert error_of(refused)["details"][0]["type"] == "pattern"
    assert error_of(missing)["details"] == [
        {"field": "(arguments)", "message": "required properties: code", "type": "required"}
    ]


def test_an_invalid_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid input schema"):
        ValidateMiddleware()._validator({"type": "string", "pattern": "(("})


async def test_a_result_over_the_limit_is_not_sent() -> None:
    plane = Plane("results", config=PlaneConfig.model_validate({"limits": {"max_result_bytes": 100_000}}))

    @plane.tool()
    def text(n: int) -> str:
        return "x" * n

    @plane.tool()
    def rows(n: int) -> list[dict[str, int]]:
        return [{"row": i} for i in range(n)]

    async with Client(plane.sdk, mode="2026-07-28") as client:
        assert (await client.call_tool("text", {"n": 40_000})).structured_content == {"result": "x" * 40_000}
        big = error_of(await client.call_tool("text", {"n": 200_000}))
        many = error_of(await client.call_tool("rows", {"n": 20_000}))
    assert (big["code"], big["retryable"]) == ("internal_error", False)
    assert big["message"] == "the tool's result is larger than the 100000-byte limit"
    assert many["details"] == {"limit_bytes": 100_000}
