"""``mcplane config check FILE``: validate an ``mcplane.yaml`` or a ``gateway.yaml`` and summarise it.

A file with an ``upstreams:`` section is a gateway config (``mcplane gateway --config``) and is
checked by the gateway's own loader; any other file is a plane config (``mcplane run --config``).
Either way secrets are resolved, ``MCPLANE__`` environment overrides applied, and the first
mistake is one line naming the file and the key (and, for an authorization rule that does not
compile, the line and column in its expression).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcplane.config import PlaneConfig
    from mcplane.gateway.config import GatewayConfig, UpstreamConfig

__all__ = ["check"]

_LAYERS = ("auth", "authorization", "rate_limit", "cache", "budget", "audit")


def check(file: str) -> int:
    from mcplane.configfile import read_yaml_file

    if "upstreams" in read_yaml_file(Path(file)):
        return _check_gateway(file)
    from mcplane.config import load_config

    config = load_config(file)
    print(f"ok: {file}")
    _print_plane(config)
    return 0


def _print_plane(config: PlaneConfig) -> None:
    sections = [name for name in _LAYERS if getattr(config, name)]
    print(f"  layers configured: {', '.join(sections) or 'none'}")
    print(f"  tool policies: {len(config.tools)} pattern(s); redis: {'yes' if config.redis_url else 'no'}")
    if config.authorization is not None and config.authorization.rules:
        # Rules were compiled as the file loaded: one that does not compile never gets here.
        print(f"  authorization rules (compiled): {', '.join(config.authorization.rules)}")
    if config.guards is not None and config.guards.tools:
        print(f"  output guards: {len(config.guards.tools)} pattern(s)")


def _check_gateway(file: str) -> int:
    from mcplane.gateway.config import load_gateway_config

    config = load_gateway_config(file)
    integrity = _describe_integrity(config)  # reads the lock file: a bad one fails the check
    print(f"ok: {file} (gateway config)")
    _print_plane(config.plane)
    print(f"  upstreams: {len(config.upstreams)}")
    for name, upstream in config.upstreams.items():
        print(f"    {name}: {_describe_upstream(config, name, upstream)}")
    if config.versions:
        print(f"  versioned tools: {', '.join(config.versions)}")
    reload = config.reload
    watching = f"on SIGHUP or a file change (checked every {reload.interval:g} s)" if reload.watch else "on SIGHUP"
    print(f"  reload: {watching}")
    print(f"  tool integrity: {integrity}")
    print(f"  tool discovery: {_describe_discovery(config)}")
    return 0


def _describe_discovery(config: GatewayConfig) -> str:
    discovery = config.discovery
    if discovery.mode == "list":
        return "every tool listed"
    described = f"search (search_tools and call_tool listed; at most {discovery.max_results} results)"
    if discovery.always_list:
        described += f"; also listed: {', '.join(discovery.always_list)}"
    return described


def _describe_integrity(config: GatewayConfig) -> str:
    from mcplane.gateway.pins import read_lock

    integrity = config.integrity
    if not integrity.enabled:
        return "off"
    pins = "pinned at first sight" if integrity.mode == "first_sight" else "only tools in the lock file"
    described = f"{pins}; on change: {integrity.on_change}; scan findings: {integrity.scan.on_finding}"
    if integrity.lock_file is not None:
        described += f"; lock file {integrity.lock_file}: {len(read_lock(integrity.lock_file))} pin(s)"
    return described


def _describe_upstream(config: GatewayConfig, name: str, upstream: UpstreamConfig) -> str:
    endpoints = ", ".join(endpoint.describe() for endpoint in upstream.endpoints)
    namespace = config.namespace_of(name)
    names = "tools under their own names" if namespace is None else f"tools as {namespace}__*"
    parts = [names, f"{len(upstream.endpoints)} endpoint(s): {endpoints}"]
    if upstream.timeout is not None:
        parts.append(f"timeout {upstream.timeout:g} s")
    if upstream.retries.attempts > 1:
        parts.append(f"up to {upstream.retries.attempts} attempts")
    if not upstream.required:
        parts.append("optional")
    return "; ".join(parts)
