"""build_pipeline: one function fills every slot from the config, and nothing edits what it built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcplane import Call, ConfigError, Plane, PlaneConfig
from mcplane.middleware.drain import DrainGate
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.observability import Lifecycle, ObserveMiddleware
from mcplane.pipeline import CallNext, PipelineFrozen
from mcplane.stack import build_pipeline


def _plane(config: PlaneConfig | None = None) -> Plane:
    plane = Plane("stacked", config=config)

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    return plane


async def test_before_a_start_only_the_core_slots_are_filled() -> None:
    layers = build_pipeline(PlaneConfig())
    assert layers.pipeline.active == ("errors", "validate", "timeout")
    assert layers.pipeline.frozen
    assert layers.observability is None
    assert layers.state is None


async def test_a_start_fills_the_configured_slots_in_their_order(tmp_path: Path) -> None:
    config = PlaneConfig.model_validate(
        {
            "rate_limit": {"default": "10/second"},
            "cache": {"enabled": True},
            "budget": {"limit": 100},
            "audit": {"path": str(tmp_path / "audit.jsonl"), "fsync": "never"},
            "guards": {"tools": {"*": {"mask": ["credentials"]}}},
        }
    )
    layers = build_pipeline(config, {})
    try:
        assert layers.pipeline.active == (
            "errors",
            "metrics",
            "audit",
            "budget",
            "rate_limit",
            "guard",
            "validate",
            "cache",
            "timeout",
        )
        assert isinstance(layers.pipeline.get("metrics"), ObserveMiddleware)
    finally:
        await layers.aclose()


async def test_the_built_pipeline_of_a_started_plane_is_frozen() -> None:
    plane = _plane()
    async with plane.lifespan():
        built = plane.layers.pipeline
        assert built.frozen
        assert plane.pipeline.get("metrics") is built.get("metrics")  # the plane's pipeline reads through
        with pytest.raises(PipelineFrozen):
            built.set("metrics", None)
    async with plane.lifespan():
        assert plane.layers.pipeline is not built, "each start builds its own pipeline"
        assert plane.layers.pipeline.frozen


async def test_drain_is_its_own_slot_just_inside_errors_when_a_lifecycle_serves_the_plane() -> None:
    plane = _plane()
    async with plane.lifespan():
        assert plane.layers.pipeline.get("drain") is None, "an unserved plane pays nothing for draining"
    lifecycle = Lifecycle(plane, "test")
    gate = lifecycle.install()
    async with plane.lifespan():
        built = plane.layers.pipeline
        assert isinstance(gate, DrainGate)
        assert built.get("drain") is gate is plane.drain
        assert isinstance(built.get("errors"), ErrorsMiddleware)
        assert built.active[:2] == ("errors", "drain")
    lifecycle.uninstall()
    async with plane.lifespan():
        assert plane.layers.pipeline.get("drain") is None


async def test_a_lifecycle_is_installed_before_the_plane_starts() -> None:
    plane = _plane()
    async with plane.lifespan():
        with pytest.raises(ConfigError, match="install the lifecycle before the plane starts"):
            Lifecycle(plane, "late").install()


async def test_the_applications_own_slot_is_served_over_the_configs(tmp_path: Path) -> None:
    seen: list[str] = []

    async def audit(call: Call, call_next: CallNext) -> Any:
        seen.append(call.name)
        return await call_next(call)

    plane = _plane(PlaneConfig.model_validate({"audit": {"path": str(tmp_path / "audit.jsonl"), "fsync": "never"}}))
    plane.pipeline.set("audit", audit)
    async with Client(plane.sdk) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
        assert plane.pipeline.get("audit") is audit
        assert plane.layers.pipeline.get("audit") is not None  # built from the config, and not served
    assert seen == ["add"]
    assert not (tmp_path / "audit.jsonl").exists() or (tmp_path / "audit.jsonl").read_text() == ""
