"""Typed tools for the hostile-argument tests (tests/fuzz/test_hostile_arguments.py), served
directly and as the upstream of a gateway."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mcplane import Plane

plane = Plane("hostile")


class Item(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    customer: str
    items: list[Item]
    tags: list[str] = []


@plane.tool()
def place(order: Order) -> int:
    """Place an order; answers how many items it holds."""
    return len(order.items)


@plane.tool()
def echo(value: Any = None) -> str:
    """Accepts anything and answers its type."""
    return type(value).__name__


@plane.tool(input_schema={"type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}}})
def spell(word: str = "") -> str:
    """A tool whose hand-written schema has a pattern that backtracks catastrophically in Python's re."""
    return word


@plane.tool()
def blob(n: int) -> str:
    """Answers ``n`` characters (a large answer for the gateway's lean lane)."""
    return "x" * n
