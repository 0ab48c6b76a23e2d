from __future__ import annotations

from mcp_types import ToolAnnotations

from mcplane.gateway.config import RetryConfig
from mcplane.gateway.retry import backoff, may_retry


def test_only_read_only_idempotent_or_configured_tools_retry() -> None:
    assert may_retry("get", None, ToolAnnotations(read_only_hint=True), [])
    assert may_retry("put", None, ToolAnnotations(idempotent_hint=True), [])
    assert not may_retry("send", None, ToolAnnotations(destructive_hint=True), [])
    assert not may_retry("send", None, None, [])
    assert may_retry("get-sum", None, None, ["get-*"])
    assert may_retry("send", True, None, [])
    assert not may_retry("get", False, ToolAnnotations(read_only_hint=True), [])


def test_backoff_is_exponential_capped_jittered_and_bounded_by_the_deadline() -> None:
    config = RetryConfig(backoff=0.1, max_backoff=1.0)
    top = [backoff(n, config, rand=lambda: 1.0) for n in range(1, 6)]
    assert top == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff(3, config, rand=lambda: 0.5) == 0.2
    assert backoff(5, config, remaining=0.05, rand=lambda: 1.0) == 0.05
