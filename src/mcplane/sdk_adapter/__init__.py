"""The one boundary between mcplane and the official MCP SDK's internals.

mcplane is built on the ``mcp`` SDK and uses its public API everywhere it can. Where it needs
something the SDK does not make public, or copies SDK behaviour on a hot path for speed, that
use lives in this package and nowhere else, so upgrading the SDK means reading this package and
running its compatibility tests (``tests/sdk_compat``).

What mcplane relies on (each item names the module here that holds it):

- :mod:`~mcplane.sdk_adapter.streams`: ``mcp.shared._context_streams.create_context_streams``
  (memory streams that carry the sender's contextvars) and the ``ReadStream``/``WriteStream``
  protocols of ``mcp.shared._stream_protocols``.
- :mod:`~mcplane.sdk_adapter.otel`: the SDK's OpenTelemetry server middleware class
  (``mcp.server._otel``), recognised so mcplane's tracing replaces it rather than doubling spans.
- :mod:`~mcplane.sdk_adapter.mcpserver`: ``MCPServer._lowlevel_server`` (handlers, name, the
  ``serverInfo`` stamp and its cached dump ``_server_info_stamp_source``), ``_tool_manager``,
  ``_prompt_manager``, ``_resource_manager`` (its
  ``_resources`` and ``_templates``), ``_subscriptions``, and ``Server._request_handlers`` (to
  remove a handler).
- :mod:`~mcplane.sdk_adapter.server`: ``MCPServer``'s ``_handle_call_tool``, ``_handle_read_resource``,
  ``_handle_get_prompt`` and the four ``_handle_list_*`` handlers (overridden to run the pipeline
  and filter lists), and ``_tool_input_schema`` (upstream tools' schemas for ``Mcp-Param`` checks).
- :mod:`~mcplane.sdk_adapter.sessions`: ``StreamableHTTPSessionManager._server_instances``,
  ``_session_owners``, ``_session_creation_lock``, ``_task_group``, ``_lifespan_state``,
  ``_discard_session`` and the ``_admit_session`` hook; ``StreamableHTTPServerTransport``'s
  ``_request_streams``, ``_idle_timeout`` and ``_requests_in_flight`` (the idle clock the SDK's
  ``handle_request`` holds, copied by the HTTP hot path).
- :mod:`~mcplane.sdk_adapter.context`: ``Context._request_context`` (whether a call runs inside an
  SDK request, without the public property's raise), ``Context._mcp_server``, and the four private
  attributes of ``Context.__init__`` (written directly when the plane makes a call's context).
- :mod:`~mcplane.sdk_adapter.eligibility`: what the SDK hands a tool (``Tool.context_kwarg``,
  ``resolved_params``, ``returns_input_required``), its built-in middleware classes, the inbound
  ladder's verdict (``classify_inbound_request``) and how its dual-era loop picks a stream's era.
- :mod:`~mcplane.sdk_adapter.results`: the runner's result shaping (the per-version sieve,
  ``resultType``, the ``serverInfo`` stamp rule) and its JSON-RPC error for an ``ErrorData``.
- :mod:`~mcplane.sdk_adapter.tools`: ``Tool.run`` and ``FuncMetadata.convert_result`` as a local
  tool's call copies them (its argument model, ``pre_parse_json``, ``model_dump_one_level``,
  ``call_fn``), ``FuncMetadata._output_adapter``, ``func_metadata._convert_to_content`` and
  ``MCPServer._tool_manager``: each tool's call without the per-call lookups.
- :mod:`~mcplane.sdk_adapter.client`: ``ClientSession._stamp``, ``_dispatcher``,
  ``_negotiated_version``, ``_call_tool_adapter``, ``mcp.client.session._clamp_inbound_ttl`` and
  ``_later_revision_fields``, ``ClientSession._tool_output_schemas`` (a result its cached output
  schema is known to accept skips the SDK's slower validator), and ``Client._relist_tool``: the
  gateway stamps and reads its own sends (the lean lane's included) exactly as the SDK client would.
- :mod:`~mcplane.sdk_adapter.transport`: the SDK's Streamable HTTP client transport as the lean lane
  copies it: the request body and headers it writes, and the ``MCPError`` stand-ins it raises for
  answers it cannot read (parse failures, ``202``, ``404`` in a session, other error statuses,
  unexpected content types), plus its stream-resumption limits.

``mcp`` is pinned to the minor version these were read from (``pyproject.toml``);
``tests/sdk_compat`` holds the boundary check and, for each copied behaviour, a test that runs
the hot path and the SDK's path on the same inputs and compares what reaches the wire.
"""
