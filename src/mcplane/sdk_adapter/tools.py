"""A local tool's call as the SDK's ``Tool.run`` makes it, with what ``run`` looks up per call kept.

``MCPServer.call_tool`` finds the tool by name (``ToolManager.get_tool``) and runs
``Tool.run(arguments, context, convert_result=True)``: ``FuncMetadata.validate_arguments``
(``pre_parse_json``, the argument model's validation, ``model_dump_one_level``), ``call_fn``
and ``convert_result`` (the output adapter, a private attribute read through pydantic's
``__getattr__`` three times per call). :class:`Invoker` does the same steps with the same
objects (the tool's own argument model, the ``FuncMetadata``'s own output adapter, the SDK's
``_convert_to_content``) and the same failures (``ToolError``/``UnexpectedToolError`` with the
same texts and causes), but keeps per tool what does not change between calls: which fields
``pre_parse_json`` may parse, the dump's field names, the output adapter.

``FuncMetadata``'s fields are read live (the SDK lets them be reassigned): a changed argument
model or output model is picked up on the next call. A tool that uses ``Resolve(...)``
parameters, or whose class overrides ``run`` (or whose server overrides ``call_tool``), gets no
invoker (:func:`invoker_for` returns ``None``): the SDK runs it. ``tests/sdk_compat/test_tools.py``
runs both on the same calls and compares results and errors.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedResourceError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.tools.tool_manager import ToolManager
from mcp.server.mcpserver.utilities.func_metadata import (
    ArgModelBase,
    FuncMetadata,
    _convert_to_content,  # pyright: ignore[reportPrivateUsage]
)
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ContentBlock, InputRequiredResult, TextContent
from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = ["Invoker", "LocalTools", "invoker_for"]


class _ArgShape:
    """What ``pre_parse_json`` and ``model_dump_one_level`` read of one argument model."""

    __slots__ = ("dump", "model", "parsed")

    def __init__(self, model: type[ArgModelBase]) -> None:
        self.model = model
        by_key: dict[str, Any] = {}  # as ``pre_parse_json`` maps keys (names, then aliases) to fields
        for field_name, info in model.model_fields.items():
            by_key[field_name] = info
            if info.alias:
                by_key[info.alias] = info
        self.parsed = frozenset(key for key, info in by_key.items() if info.annotation is not str)
        """Keys whose string value ``pre_parse_json`` tries as JSON (the field is not a ``str``)."""
        plain = model.model_dump_one_level is ArgModelBase.model_dump_one_level
        self.dump = (
            tuple((field_name, info.alias or field_name) for field_name, info in model.model_fields.items())
            if plain
            else None
        )
        """``model_dump_one_level``'s (field, key) pairs (``None``: the model overrides it)."""


_TEXT_CONFIG = ("str_strip_whitespace", "str_to_lower", "str_to_upper", "str_min_length", "str_max_length")


def _plain_text_wrapper(model: Any) -> bool:
    """``model`` is the wrapper the SDK makes for a ``str`` return (one ``result: str`` field, no
    constraint, alias, validator, serializer or text setting): validating ``{"result": text}`` with
    it and dumping the model in JSON mode gives ``{"result": text}`` back for any ``str`` text."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    fields = model.model_fields
    info = fields.get("result")
    if len(fields) != 1 or info is None or info.annotation is not str or info.metadata:
        return False
    if info.alias or info.validation_alias or info.serialization_alias or model.model_computed_fields:
        return False
    decorators = model.__pydantic_decorators__
    if any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
            decorators.field_serializers,
            decorators.model_serializers,
        )
    ):
        return False
    config = model.model_config
    return not any(config.get(key) for key in _TEXT_CONFIG)


def _pre_parse(data: dict[str, Any], parsed: frozenset[str]) -> dict[str, Any]:
    """``FuncMetadata.pre_parse_json``: only a copy when some value is parsed."""
    new_data = data
    for key, value in data.items():
        if isinstance(value, str) and key in parsed:
            try:
                pre_parsed = json.loads(value)
            except (ValueError, RecursionError):
                continue
            if isinstance(pre_parsed, str | int | float):
                continue
            if new_data is data:
                new_data = data.copy()
            new_data[key] = pre_parsed
    return new_data


class Invoker:
    """Runs one registered tool as ``Tool.run(arguments, context, convert_result=True)`` does."""

    __slots__ = ("_adapter", "_shape", "_text_output", "tool")

    def __init__(self, tool: Tool) -> None:
        self.tool = tool
        self._shape: _ArgShape | None = None
        self._adapter: tuple[Any, TypeAdapter[Any]] | None = None
        self._text_output: tuple[Any, bool] | None = None

    def _validate(self, metadata: FuncMetadata, arguments: dict[str, Any]) -> dict[str, Any]:
        model = metadata.arg_model
        shape = self._shape
        if shape is None or shape.model is not model:
            shape = self._shape = _ArgShape(model)
        validated = model.model_validate(_pre_parse(arguments, shape.parsed))
        if shape.dump is None:
            return validated.model_dump_one_level()
        return {output: getattr(validated, field) for field, output in shape.dump}

    def _output_adapter(self, metadata: FuncMetadata, output_model: Any) -> TypeAdapter[Any]:
        cached = self._adapter
        if cached is None or cached[0] is not output_model:
            adapter = metadata._output_adapter(output_model)  # pyright: ignore[reportPrivateUsage]
            cached = self._adapter = (output_model, adapter)
        return cached[1]

    def _wraps_text(self, output_model: Any) -> bool:
        """Whether ``output_model`` is the SDK's wrapper of a plain ``str`` return (remembered per model)."""
        known = self._text_output
        if known is None or known[0] is not output_model:
            known = self._text_output = (output_model, _plain_text_wrapper(output_model))
        return known[1]

    def _convert(self, metadata: FuncMetadata, result: Any) -> CallToolResult | InputRequiredResult:
        """``FuncMetadata.convert_result``."""
        if isinstance(result, InputRequiredResult):
            return result
        output_model = metadata.output_model if metadata.output_schema is not None else None
        if isinstance(result, CallToolResult):
            if output_model is not None and not result.is_error:
                self._output_adapter(metadata, output_model).validate_python(result.structured_content)
            return result
        content: list[ContentBlock] = (
            [TextContent(type="text", text=result)] if type(result) is str else _convert_to_content(result)
        )
        if output_model is None:
            return CallToolResult(content=content)
        if metadata.wrap_output:
            if type(result) is str and self._wraps_text(output_model):
                return CallToolResult(content=content, structured_content={"result": result})
            result = {"result": result}
        adapter = self._output_adapter(metadata, output_model)
        validated = adapter.validate_python(result, by_alias=True, by_name=True)
        if isinstance(validated, BaseModel):
            structured = validated.model_dump(mode="json", by_alias=True)
        else:
            structured = adapter.dump_python(validated, mode="json", by_alias=True)
        return CallToolResult(content=content, structured_content=structured)

    async def __call__(self, arguments: dict[str, Any], context: Any) -> CallToolResult | InputRequiredResult:
        tool = self.tool
        metadata = tool.fn_metadata
        try:
            validated = self._validate(metadata, arguments)
        except ValidationError as exc:
            raise ToolError(f"Error executing tool {tool.name}: {exc}") from exc
        except MCPError:
            raise
        except Exception as exc:
            raise UnexpectedToolError(f"Error executing tool {tool.name}") from exc
        try:
            context_kwarg = tool.context_kwarg
            if context_kwarg is not None:
                validated[context_kwarg] = context
            fn = tool.fn
            if tool.is_async:
                result = await fn(**validated)
            else:
                result = await anyio.to_thread.run_sync(functools.partial(fn, **validated))
            return self._convert(metadata, result)
        except MCPError:
            raise
        except (UnexpectedToolError, UnexpectedResourceError) as exc:
            raise UnexpectedToolError(f"Error executing tool {tool.name}: {exc}") from exc
        except (ToolError, ResourceError) as exc:
            raise ToolError(f"Error executing tool {tool.name}: {exc}") from exc
        except Exception as exc:
            raise UnexpectedToolError(f"Error executing tool {tool.name}") from exc


def _plain_server(sdk: MCPServer[Any]) -> bool:
    manager = sdk._tool_manager  # pyright: ignore[reportPrivateUsage]
    return (
        type(sdk).call_tool is MCPServer.call_tool
        and type(manager).call_tool is ToolManager.call_tool
        and type(manager).get_tool is ToolManager.get_tool
    )


def invoker_for(sdk: MCPServer[Any], tool: Tool) -> Invoker | None:
    """An :class:`Invoker` for ``tool`` as ``sdk`` runs it, or ``None`` (let the SDK run it)."""
    if tool.resolved_params or type(tool).run is not Tool.run or not _plain_server(sdk):
        return None
    if type(tool.fn_metadata) is not FuncMetadata:
        return None
    return Invoker(tool)


class LocalTools:
    """Runs ``sdk``'s registered tools by name, as ``sdk.call_tool`` does, each with its kept :class:`Invoker`.

    A tool is looked up once per call (``ToolManager.get_tool``); its invoker is kept while the
    registered tool is the same object, and made again when the name is registered anew.
    """

    __slots__ = ("_manager", "_runners", "_sdk")

    def __init__(self, sdk: MCPServer[Any]) -> None:
        self._sdk = sdk
        self._manager: ToolManager = sdk._tool_manager  # pyright: ignore[reportPrivateUsage]
        self._runners: dict[str, tuple[Tool, Invoker | None]] = {}

    def __contains__(self, name: str) -> bool:
        return self._manager.get_tool(name) is not None

    def runner(self, name: str) -> Callable[[dict[str, Any], Any], Awaitable[Any]] | None:
        """What runs the tool ``name`` with ``(arguments, context)`` (``None``: no such local tool)."""
        tool = self._manager.get_tool(name)
        if tool is None:
            return None
        kept = self._runners.get(name)
        if kept is None or kept[0] is not tool:
            kept = self._runners[name] = (tool, invoker_for(self._sdk, tool))
        invoker = kept[1]
        if invoker is not None:
            return invoker
        sdk = self._sdk
        return lambda arguments, context: sdk.call_tool(name, arguments, context)
