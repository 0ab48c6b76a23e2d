"""The client the official conformance suite drives in client mode: :class:`mcplane.client.Client`.

``conformance client --command "python tests/conformance/client_under_test.py" --scenario NAME``
starts a scenario's mock server and runs this program with the server's URL as its last argument,
the scenario's name in ``MCP_CONFORMANCE_SCENARIO``, the protocol version to speak in
``MCP_CONFORMANCE_PROTOCOL_VERSION`` (2025-11-25 and older: the ``initialize`` handshake;
2026-07-28: stateless) and, for some scenarios, data in ``MCP_CONFORMANCE_CONTEXT`` (JSON).

What it does is what any agent would do with a server it does not know, so one plan serves every
scenario: list the tools and call each (with the calls the context names, else with arguments made
from each tool's input schema), list and read the resources, list and get the prompts; answer an
elicitation by accepting the schema's defaults (SEP-1034), a sampling request with a fixed text,
a roots request with one root. ``json_schema_echo`` gets the input schema of the tool listed
beside it, verbatim (SEP-1613). A failed call is reported on stderr and the plan goes on.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp.client.session import ClientRequestContext
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
    Tool,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcplane.client import Client

ECHO_TOOL = "json_schema_echo"
FOCAL_TOOL = "json_schema_2020_12_tool"


def sample(schema: Any) -> Any:
    """A value ``schema`` accepts: its default, else its first enum or const, else one of its type."""
    if not isinstance(schema, dict):
        return "x"
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1, "boolean": True, "object": {}, "array": [], "null": None}.get(kind, "x")


def arguments_for(tool: Tool) -> dict[str, Any]:
    schema = tool.input_schema or {}
    properties: dict[str, Any] = schema.get("properties") or {}
    return {name: sample(properties.get(name)) for name in schema.get("required") or ()}


async def on_elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    requested: Any = getattr(params, "requested_schema", None) or {}
    properties: dict[str, Any] = requested.get("properties") or {}
    return ElicitResult(action="accept", content={name: sample(schema) for name, schema in properties.items()})


async def on_sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text="ok"), model="conformance", stop_reason="endTurn"
    )


async def on_roots(context: ClientRequestContext) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///conformance", name="conformance")])


async def run(url: str, version: str, context: dict[str, Any]) -> None:
    mode = "legacy" if version in HANDSHAKE_PROTOCOL_VERSIONS else version
    async with Client(
        url,
        mode=mode,
        timeout=20.0,
        raise_on_error=False,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        list_roots_callback=on_roots,
    ) as client:
        try:
            tools = await client.list_tools()
        except Exception as exc:  # e.g. -32022: this client does not renegotiate its version (a warning)
            print(f"tools/list: {type(exc).__name__}: {exc}", file=sys.stderr)
            tools = []
        by_name = {tool.name: tool for tool in tools}
        calls: list[tuple[str, dict[str, Any]]] = [
            (call["name"], dict(call.get("arguments") or {})) for call in context.get("toolCalls") or ()
        ]
        if not calls:
            for tool in tools:
                arguments = arguments_for(tool)
                if tool.name == ECHO_TOOL and FOCAL_TOOL in by_name:
                    arguments = {"schema": by_name[FOCAL_TOOL].input_schema}
                calls.append((tool.name, arguments))
        for name, arguments in calls:
            try:
                await client.call_tool(name, arguments)
            except Exception as exc:  # a refusal is an answer too: the next call goes on
                print(f"tools/call {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        await _resources_and_prompts(client)


async def _resources_and_prompts(client: Client) -> None:
    """Resources and prompts through the SDK client (``client.sdk``), asked for even when no
    capability says so: a 2026-07-28 connection pinned without ``server/discover`` knows none."""
    sdk = client.sdk
    try:
        resources = (await sdk.list_resources()).resources
    except Exception as exc:
        print(f"resources/list: {type(exc).__name__}: {exc}", file=sys.stderr)
        resources = []
    for resource in resources:
        try:
            await sdk.read_resource(str(resource.uri))
        except Exception as exc:
            print(f"resources/read {resource.uri}: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        prompts = (await sdk.list_prompts()).prompts
    except Exception as exc:
        print(f"prompts/list: {type(exc).__name__}: {exc}", file=sys.stderr)
        prompts = []
    for prompt in prompts:
        arguments = {argument.name: "x" for argument in prompt.arguments or () if argument.required}
        try:
            await sdk.get_prompt(prompt.name, arguments or None)
        except Exception as exc:
            print(f"prompts/get {prompt.name}: {type(exc).__name__}: {exc}", file=sys.stderr)


def main() -> int:
    url = sys.argv[-1]
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or HANDSHAKE_PROTOCOL_VERSIONS[-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    anyio.run(run, url, version, context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
