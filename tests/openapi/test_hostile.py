"""A hostile API behind the OpenAPI provider, over real HTTP: huge, endless, compressed, slow,
malformed and mislabelled answers, and hostile arguments. Each call ends with a result or a
stable error code within the tool's timeout, never a crash, and the process's memory stays
bounded by ``max_response_bytes``."""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client

from mcplane.gateway import Gateway
from tests.openapi.conftest import error_body, error_code

CAP = 65_536
BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Hostile", "version": "1"},
    "paths": {
        **{
            f"/{name}": {"get": {"operationId": name, "responses": {"200": {"description": "ok"}}}}
            for name in (
                "huge",
                "endless",
                "bomb",
                "badjson",
                "deepjson",
                "mislabelled",
                "binary",
                "bigheaders",
                "drip",
                "garbled",
                "zipped",
                "echo",
            )
        },
        "/typed": {
            "get": {
                "operationId": "typed",
                "parameters": [{"name": "kind", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}
                        },
                    }
                },
            }
        },
        "/files/{name}": {
            "get": {
                "operationId": "file",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "X-Tag", "in": "header", "schema": {"type": "string"}},
                    {"name": "ids", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}


class _API(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release = threading.Event()
    seen: list[str] = []

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _answer(self, body: bytes, media: str = "application/json", **extra: str) -> None:
        self._head(200, {"content-type": media, "content-length": str(len(body)), **extra})
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(self.path)
        name = self.path.split("?", 1)[0].strip("/")
        try:
            self._route(name)
        except OSError:  # the client hung up (as it should, past the cap)
            pass

    def _route(self, name: str) -> None:
        if name == "huge":  # 50 MB, announced
            self._head(200, {"content-type": "application/json", "content-length": str(50 * 1024 * 1024)})
            chunk = b" " * 65_536
            for _ in range(800):
                self.wfile.write(chunk)
        elif name == "endless":  # chunked, never ends
            self._head(200, {"content-type": "application/json", "transfer-encoding": "chunked"})
            chunk = b"[" + b"0," * 8191 + b"0]"
            while not self.release.is_set():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif name == "bomb":  # 64 KB that inflates to 64 MB
            self._answer(BOMB, "application/json", **{"content-encoding": "gzip"})
        elif name == "garbled":  # says gzip, is not
            self._answer(b"\x1f\x8b not gzip at all", "application/json", **{"content-encoding": "gzip"})
        elif name == "zipped":  # a small compressed answer decodes as before
            self._answer(gzip.compress(b'{"zipped": true}'), "application/json", **{"content-encoding": "gzip"})
        elif name == "badjson":
            self._answer(b'{"n": 1, "broken": ')
        elif name == "deepjson":
            self._answer(b"[" * 5000 + b"]" * 5000)
        elif name == "mislabelled":
            self._answer(b'{"n": 2}', "text/html; charset=utf-8")
        elif name == "binary":
            self._answer(b"\xff\xfe\x00\x01" * 64, "application/octet-stream")
        elif name == "typed":
            kind = self.path.split("kind=", 1)[-1]
            answers = {
                "string": (b'"not an object"', "application/json"),
                "html": (b'{"n": 1}', "text/html"),
                "broken": (b'{"n": ', "application/json"),
            }
            body, media = answers.get(kind, (b'{"n": 1}', "application/json"))
            self._answer(body, media)
        elif name == "bigheaders":
            self._head(200, {"content-type": "application/json", "x-huge": "h" * 200_000, "content-length": "2"})
            self.wfile.write(b"{}")
        elif name == "drip":  # a byte, then nothing until the test ends
            self._head(200, {"content-type": "application/json", "content-length": "1000"})
            self.wfile.write(b"{")
            self.wfile.flush()
            self.release.wait(30)
        else:
            self._answer(json.dumps({"path": self.path, "tag": self.headers.get("x-tag")}).encode())

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _API)
    httpd.daemon_threads = True
    _API.release = threading.Event()
    _API.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _API.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def plane(api: str, tmp_path: Path) -> Gateway:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    upstream = {"openapi": {"spec": str(spec), "base_url": api, "max_response_bytes": CAP}, "timeout": "1s"}
    return Gateway.from_config({"server": {"default_timeout": "10s"}, "upstreams": {"h": upstream}})


@pytest.mark.parametrize(
    ("tool", "code", "reason"),
    [
        ("huge", "upstream_error", "response_too_large"),
        ("endless", "upstream_error", "response_too_large"),
        ("bomb", "upstream_error", "response_too_large"),
        ("drip", "timeout", None),
        ("garbled", "upstream_error", "bad_content_encoding"),
    ],
)
async def test_oversized_endless_compressed_and_slow_answers(
    plane: Gateway, tool: str, code: str, reason: str | None
) -> None:
    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool(f"h__{tool}", {})
    body = error_body(result)
    assert body["code"] == code, body
    if reason is not None:
        assert body["details"]["reason"] == reason


async def test_a_compression_bomb_never_inflates_past_the_cap(plane: Gateway) -> None:
    """64 KB of gzip that would inflate to 64 MB: the peak of Python allocations during the call
    stays far below the inflated size (the body is inflated piecewise and refused past the cap)."""
    async with Client(plane.sdk, mode="legacy") as client:
        zipped = await client.call_tool("h__zipped", {})
        assert zipped.structured_content == {"zipped": True}
        tracemalloc.start()
        try:
            result = await client.call_tool("h__bomb", {})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert error_body(result)["details"]["reason"] == "response_too_large"
    assert peak < 8 * 1024 * 1024, peak


async def test_huge_headers_are_a_stable_error(plane: Gateway) -> None:
    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool("h__bigheaders", {})
    assert error_code(result) in ("dependency_unavailable", "upstream_error"), result


async def test_malformed_and_mislabelled_bodies_come_back_as_text(plane: Gateway) -> None:
    """Not JSON although labelled so, JSON labelled as HTML, bytes: the caller gets the text
    (nothing is lost, nothing is guessed)."""
    async with Client(plane.sdk, mode="legacy") as client:
        bad = await client.call_tool("h__badjson", {})
        deep = await client.call_tool("h__deepjson", {})
        mislabelled = await client.call_tool("h__mislabelled", {})
        binary = await client.call_tool("h__binary", {})
    for result in (bad, deep, mislabelled, binary):
        assert not result.is_error, result
    assert bad.content[0].text == '{"n": 1, "broken": '  # pyright: ignore[reportAttributeAccessIssue]
    assert mislabelled.content[0].text == '{"n": 2}'  # pyright: ignore[reportAttributeAccessIssue]


@pytest.mark.parametrize("kind", ["string", "html", "broken"])
async def test_an_answer_that_breaks_the_declared_output_schema_is_an_upstream_error(plane: Gateway, kind: str) -> None:
    """The tool declares an object (its outputSchema): a JSON string, JSON labelled as HTML, or
    broken JSON would put structuredContent that breaks it in the caller's hands."""
    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool("h__typed", {"kind": kind})
        good = await client.call_tool("h__typed", {"kind": "object"})
    body = error_body(result)
    assert body["code"] == "upstream_error"
    assert body["details"]["reason"] == "response_mismatch"
    assert good.structured_content == {"n": 1}


async def test_hostile_arguments(plane: Gateway) -> None:
    seen = _API.seen
    async with Client(plane.sdk, mode="legacy") as client:
        traversal = await client.call_tool("h__file", {"name": "../../admin"})
        assert not traversal.is_error, traversal
        crlf = await client.call_tool("h__file", {"name": "a", "X-Tag": "x\r\nX-Admin: 1"})
        assert error_code(crlf) == "invalid_arguments"
        many = await client.call_tool("h__file", {"name": "a", "ids": list(range(200_000))})
        assert error_code(many) == "invalid_arguments", many
        long_query = await client.call_tool("h__file", {"name": "a", "ids": list(range(20_000))})
        assert error_code(long_query) == "invalid_arguments", long_query
        long_path = await client.call_tool("h__file", {"name": "p" * 70_000})
        assert error_code(long_path) == "invalid_arguments", long_path
        for value in ("\u00e9t\u00e9", "a\u2028b", "a\x7fb"):
            result = await client.call_tool("h__file", {"name": "a", "X-Tag": value})
            assert error_code(result) == "invalid_arguments", (value, result)
        fine = await client.call_tool("h__file", {"name": "a", "X-Tag": "tab\tand space"})
        assert not fine.is_error, fine
    assert "/files/..%2F..%2Fadmin" in seen
    assert not any("admin" in path and "%2F" not in path for path in seen)
