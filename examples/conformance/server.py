"""The conformance Plane: every fixture the official MCP conformance suite expects.

Serve it with ``mcplane run examples/conformance/server.py --transport http --port PORT`` and
point ``conformance server --url http://127.0.0.1:PORT/mcp --suite all`` at it. Fixture names,
texts and behaviours follow the suite's scenarios (``conformance list`` shows them).
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolResult,
    ClientCapabilities,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    InputResponse,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import Field

from mcplane import Context, InternalError, Plane

IMAGE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
AUDIO_WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

plane = Plane("mcp-conformance-test-server", version="1.0.0")


# ----------------------------------------------------------------------------------- helpers
def _elicit(message: str, properties: dict[str, Any], required: list[str]) -> ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": required}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))  # type: ignore[arg-type]


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def _responses(ctx: Context) -> dict[str, InputResponse]:
    return dict(ctx.input_responses or {})


def _accepted(response: InputResponse | None) -> dict[str, Any] | None:
    if isinstance(response, ElicitResult) and response.action == "accept":
        return dict(response.content or {})
    return None


def _sampled_text(response: InputResponse | None) -> str | None:
    if isinstance(response, CreateMessageResult) and isinstance(response.content, TextContent):
        return response.content.text
    return None


# ----------------------------------------------------------------------------------- content tools
@plane.tool()
def test_simple_text() -> str:
    """Tests simple text content response."""
    return "This is a simple text response for testing."


@plane.tool()
def test_image_content() -> list[ImageContent]:
    """Tests image content response."""
    return [ImageContent(type="image", data=IMAGE_PNG, mime_type="image/png")]


@plane.tool()
def test_audio_content() -> list[AudioContent]:
    """Tests audio content response."""
    return [AudioContent(type="audio", data=AUDIO_WAV, mime_type="audio/wav")]


@plane.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Tests embedded resource content response."""
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return [EmbeddedResource(type="resource", resource=resource)]


@plane.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Tests response with multiple content types (text, image, resource)."""
    resource = TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=IMAGE_PNG, mime_type="image/png"),
        EmbeddedResource(type="resource", resource=resource),
    ]


@plane.tool()
def test_error_handling() -> str:
    """Tests error response handling: the failure reaches the client as an ``isError`` result."""
    raise InternalError("This tool intentionally returns an error for testing")


# ----------------------------------------------------------------------------------- notifications
@plane.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution."""
    await ctx.info("Tool execution started")
    await ctx.info("Tool processing data")
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@plane.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs at info level: delivered only when the request opted in with a log level."""
    await ctx.info("Logging tool ran")
    return "Logging tool complete"


@plane.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications."""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
    meta = ctx.request_context.meta
    token = meta.get("progressToken") if meta else None
    return str(token if token is not None else 0)


@plane.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes the SSE stream mid-call so the client reconnects (SEP-1699)."""
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)  # the work goes on while the client reconnects with Last-Event-ID
    await ctx.info("After reconnect")
    return "Reconnection test completed"


async def _added_tool() -> str:
    """A tool that test_trigger_tool_change adds and removes."""
    return "added"


async def _added_prompt() -> str:
    """A prompt that test_trigger_prompt_change adds and removes."""
    return "added"


_toggled: dict[str, bool] = {"tool": False, "prompt": False}


@plane.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds or removes a tool, then announces that the tool list changed."""
    if _toggled["tool"]:
        plane.sdk.remove_tool("test_added_tool")
    else:
        plane.tool(name="test_added_tool")(_added_tool)
    _toggled["tool"] = not _toggled["tool"]
    await ctx.notify_tools_changed()
    return "tool list changed"


@plane.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds or removes a prompt, then announces that the prompt list changed."""
    if _toggled["prompt"]:
        plane.sdk.remove_prompt("test_added_prompt")
    else:
        plane.prompt(name="test_added_prompt")(_added_prompt)
    _toggled["prompt"] = not _toggled["prompt"]
    await ctx.notify_prompts_changed()
    return "prompt list changed"


# ----------------------------------------------------------------------------------- client requests (2025-11-25)
@plane.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)."""
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    result = await ctx.session.create_message(messages=[message], max_tokens=100, related_request_id=ctx.request_id)
    text = result.content.text if isinstance(result.content, TextContent) else "No response"
    return f"LLM response: {text}"


async def _elicit_raw(ctx: Context, message: str, schema: dict[str, Any]) -> ElicitResult:
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)  # type: ignore[arg-type]


@plane.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)."""
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    result = await _elicit_raw(ctx, message, schema)
    return f"User response: action={result.action}, content={json.dumps(result.content or {})}"


@plane.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values for every primitive type (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    result = await _elicit_raw(ctx, "Please review and update the form fields with defaults", schema)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


@plane.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with the five enum schema variants (SEP-1330)."""
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
        "required": [],
    }
    result = await _elicit_raw(ctx, "Please select options from the enum fields", schema)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


# ----------------------------------------------------------------------------------- multi-round trips (2026-07-28)
_NAME = ({"name": {"type": "string"}}, ["name"])


@plane.tool()
def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks for the caller's name; round 2 greets them (SEP-2322)."""
    answer = _accepted(_responses(ctx).get("user_name"))
    if answer is None or not isinstance(answer.get("name"), str):
        return InputRequiredResult(input_requests={"user_name": _elicit("What is your name?", *_NAME)})
    return f"Hello, {answer['name']}!"


@plane.tool()
def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks for input in-band (an InputRequiredResult), never as a standalone request."""
    answer = _accepted(_responses(ctx).get("user_name"))
    if answer is None:
        return InputRequiredResult(input_requests={"user_name": _elicit("What is your name?", *_NAME)})
    return f"Hello, {answer.get('name')}!"


@plane.tool()
def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks the client's model a question; round 2 returns its answer."""
    text = _sampled_text(_responses(ctx).get("capital_question"))
    if text is None:
        return InputRequiredResult(input_requests={"capital_question": _sample("What is the capital of France?", 100)})
    return f"Sampling answer: {text}"


@plane.tool()
def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks for the client's roots; round 2 lists them."""
    response = _responses(ctx).get("client_roots")
    if not isinstance(response, ListRootsResult):
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
    return "Roots: " + ", ".join(str(root.uri) for root in response.roots)


@plane.tool()
def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    """Round 1 carries request state; round 2 proves it came back intact."""
    answer = _accepted(_responses(ctx).get("confirm"))
    if answer is None or ctx.request_state != "conformance-state":
        return InputRequiredResult(
            input_requests={"confirm": _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
            request_state="conformance-state",
        )
    return "state-ok: confirmed"


@plane.tool()
def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Request state is sealed by the SDK: a tampered copy is rejected before this body runs."""
    answer = _accepted(_responses(ctx).get("confirm"))
    if answer is None or ctx.request_state != "tamper-proof-state":
        return InputRequiredResult(
            input_requests={"confirm": _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
            request_state="tamper-proof-state",
        )
    return "state-ok: verified"


@plane.tool()
def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """One round asks for an elicitation, a sampling and the client's roots at once."""
    responses = _responses(ctx)
    name = _accepted(responses.get("user_name"))
    greeting = _sampled_text(responses.get("greeting"))
    roots = responses.get("client_roots")
    if name is None or greeting is None or not isinstance(roots, ListRootsResult):
        requests: dict[str, InputRequest] = {
            "user_name": _elicit("What is your name?", *_NAME),
            "greeting": _sample("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        }
        return InputRequiredResult(input_requests=requests, request_state="multiple-inputs")
    return f"{greeting} {name.get('name')} ({len(roots.roots)} roots)"


@plane.tool()
def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    """Three rounds: a name, then a colour, then the answer; the state evolves each round."""
    responses = _responses(ctx)
    state = json.loads(ctx.request_state) if ctx.request_state else {}
    if "name" not in state:
        answer = _accepted(responses.get("step1"))
        if answer is None:
            return InputRequiredResult(
                input_requests={"step1": _elicit("Step 1: What is your name?", *_NAME)},
                request_state=json.dumps({"round": 1}),
            )
        state = {"round": 2, "name": answer.get("name")}
    answer = _accepted(responses.get("step2"))
    if answer is None:
        color = ({"color": {"type": "string"}}, ["color"])
        return InputRequiredResult(
            input_requests={"step2": _elicit("Step 2: What is your favorite color?", *color)},
            request_state=json.dumps(state),
        )
    return f"{state['name']} likes {answer.get('color')}"


@plane.tool()
def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only for what the client declared it can answer."""
    caps = ctx.client_capabilities or ClientCapabilities()
    responses = _responses(ctx)
    requests: dict[str, InputRequest] = {}
    if caps.elicitation is not None and "user_name" not in responses:
        requests["user_name"] = _elicit("What is your name?", *_NAME)
    if caps.sampling is not None and "greeting" not in responses:
        requests["greeting"] = _sample("Generate a greeting", 50)
    if requests:
        return InputRequiredResult(input_requests=requests)
    return "capabilities respected"


@plane.tool()
def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability; refuses with -32021 when it was not declared."""
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="Missing required client capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "sampling is available"


# ----------------------------------------------------------------------------------- schemas and headers
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@plane.tool(description="Tool with JSON Schema 2020-12 features", input_schema=JSON_SCHEMA_2020_12)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    return f"contact {name or 'anonymous'} by {contactMethod or 'email'}"


_REGION_HEADER = Field(description="Mirrored in Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"})


@plane.tool()
def test_x_mcp_header(region: Annotated[str, _REGION_HEADER]) -> str:
    """Echoes a parameter that is mirrored into the Mcp-Param-Region request header (SEP-2243)."""
    return f"region={region}"


# ----------------------------------------------------------------------------------- resources
@plane.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing."""
    return "This is the content of the static text resource."


@plane.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a PNG image) for testing."""
    return base64.b64decode(IMAGE_PNG)


@plane.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template with parameter substitution."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


@plane.resource("test://watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients can subscribe to."""
    return "Watched resource content"


# ----------------------------------------------------------------------------------- prompts
@plane.prompt()
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@plane.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@plane.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:
    """A prompt that embeds a resource."""
    resource = {"uri": resourceUri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}
    return [
        {"role": "user", "content": {"type": "resource", "resource": resource}},
        {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}},
    ]


@plane.prompt()
def test_prompt_with_image() -> list[dict[str, Any]]:
    """A prompt that includes image content."""
    return [
        {"role": "user", "content": {"type": "image", "data": IMAGE_PNG, "mimeType": "image/png"}},
        {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
    ]


@plane.prompt()
def test_input_required_result_prompt(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks which context to use; round 2 renders the prompt with it (SEP-2322)."""
    answer = _accepted(_responses(ctx).get("user_context"))
    if answer is None:
        schema = ({"context": {"type": "string"}}, ["context"])
        return InputRequiredResult(
            input_requests={"user_context": _elicit("What context should the prompt use?", *schema)}
        )
    return f"Use this context: {answer.get('context')}"


# ----------------------------------------------------------------------------------- completion
@plane.completion()
async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
) -> Completion:
    """Suggests values that start with what the user typed so far."""
    candidates = ["paris", "park", "party"] if argument.name == "arg1" else []
    values = [value for value in candidates if value.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


# ----------------------------------------------------------------------------------- tasks (SEP-2663)
@plane.tool()
def greet(name: str) -> str:
    """Greets someone; never a task."""
    return f"Hello, {name}!"


@plane.tool(task=True)
async def slow_compute(seconds: float, ctx: Context, label: str = "") -> str:
    """Works for ``seconds`` seconds, as a task for clients that declared the tasks extension."""
    await ctx.report_progress(0, seconds or 1, f"computing {label}".strip())
    await anyio.sleep(seconds)
    return f"computed {label or 'result'} in {seconds:g}s"


@plane.tool(task="required")
def failing_job() -> CallToolResult:
    """Always ends in a tool execution error (``isError``); needs the tasks extension."""
    return CallToolResult(content=[TextContent(type="text", text="the job failed")], is_error=True)


@plane.tool(task=True)
def protocol_error_job() -> str:
    """Always ends in a JSON-RPC error, so its task settles ``failed``."""
    raise MCPError(code=INTERNAL_ERROR, message="the job hit an internal error")


@plane.tool(task=True)
def confirm_delete(filename: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the client to confirm (an input request on the task), then deletes or keeps the file."""
    answer = _accepted(_responses(ctx).get("confirm"))
    if answer is None:
        schema = ({"confirm": {"type": "boolean"}}, ["confirm"])
        return InputRequiredResult(input_requests={"confirm": _elicit(f"Delete {filename}?", *schema)})
    return f"deleted {filename}" if answer.get("confirm") else f"kept {filename}"


@plane.tool(task=True)
def multi_input(ctx: Context) -> str | InputRequiredResult:
    """Asks two questions at once; the task waits until both are answered."""
    responses = _responses(ctx)
    first, second = _accepted(responses.get("first")), _accepted(responses.get("second"))
    if first is None or second is None:
        fields = ({"name": {"type": "string"}, "confirm": {"type": "boolean"}}, ["name"])
        return InputRequiredResult(
            input_requests={
                "first": _elicit("First value?", *fields),
                "second": _elicit("Second value?", *fields),
            }
        )
    return f"got {first.get('name')} and {second.get('name')}"


@plane.tool(task="required", task_after=None)
async def test_tool_with_task(ctx: Context) -> str | InputRequiredResult:
    """Gathers a name with a multi-round-trip round, then finishes the work as a task."""
    answer = _accepted(_responses(ctx).get("user_name"))
    if answer is None or not isinstance(answer.get("name"), str):
        return InputRequiredResult(input_requests={"user_name": _elicit("What is your name?", *_NAME)})
    await ctx.start_task()
    return f"Hello, {answer['name']}! Your task is done."


# ----------------------------------------------------------------------------------- legacy (2025-11-25) methods
_subscriptions: set[str] = set()


@plane.request_handler("logging/setLevel", SetLevelRequestParams)
async def set_logging_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    """Accepts the level; handshake-era log delivery is otherwise unfiltered."""
    return EmptyResult()


@plane.request_handler("resources/subscribe", SubscribeRequestParams)
async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
    _subscriptions.add(str(params.uri))
    return EmptyResult()


@plane.request_handler("resources/unsubscribe", UnsubscribeRequestParams)
async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
    _subscriptions.discard(str(params.uri))
    return EmptyResult()


__all__ = ["plane"]
