"""Tools of an OpenAPI upstream called through a gateway plane against a real REST service."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.openapi import mount_openapi
from tests.openapi.conftest import RestService, error_body, error_code, shop_plane, shop_upstream


async def test_tools_are_listed_namespaced_with_schemas_and_annotations(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert "shop__listItems" in tools
    assert "shop__get_things_id" in tools
    get_item = tools["shop__getItem"]
    assert get_item.description == "Get one item"
    assert get_item.input_schema["required"] == ["item_id"]
    assert get_item.annotations is not None
    assert get_item.annotations.read_only_hint is True
    assert tools["shop__deleteItem"].annotations.idempotent_hint is True  # pyright: ignore[reportOptionalMemberAccess]
    assert tools["shop__createItem"].annotations.idempotent_hint is False  # pyright: ignore[reportOptionalMemberAccess]
    assert get_item.output_schema is not None
    assert "Item" in get_item.output_schema["$defs"]


async def test_path_query_and_pagination(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        first = await client.call_tool("shop__listItems", {"page": 1, "per_page": 3})
        assert not first.is_error, first
        assert first.structured_content is not None
        assert [i["id"] for i in first.structured_content["items"]] == [1, 2, 3]
        assert first.structured_content["next_page"] == 2
        last = await client.call_tool("shop__listItems", {"page": 3, "per_page": 3})
        assert last.structured_content is not None
        assert last.structured_content["next_page"] is None
        item = await client.call_tool("shop__getItem", {"item_id": 2})
        assert item.structured_content == {"id": 2, "name": "item-2", "price": 20, "tags": []}


async def test_json_body_is_spread_into_arguments(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        created = await client.call_tool("shop__createItem", {"name": "lamp", "price": 12.5, "tags": ["home"]})
        assert not created.is_error, created
        assert created.structured_content is not None
        assert created.structured_content["name"] == "lamp"
        assert created.structured_content["tags"] == ["home"]
        tagged = await client.call_tool("shop__listItems", {"tag": ["home"], "per_page": 50})
        assert tagged.structured_content is not None
        assert [i["name"] for i in tagged.structured_content["items"]] == ["lamp"]


async def test_form_body(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        result = await client.call_tool("shop__login", {"username": "ada", "password": "secret", "remember": True})
        assert result.structured_content == {"user": "ada", "remember": "true"}


async def test_clashing_parameter_names_are_renamed_visibly(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["shop__get_things_id"].input_schema
        assert set(schema["properties"]) == {"id", "id_query"}
        assert "query parameter 'id'" in schema["properties"]["id_query"]["description"]
        result = await client.call_tool("shop__get_things_id", {"id": "a b", "id_query": "q"})
        assert result.structured_content == {"path_id": "a b", "query_id": "q"}


async def test_arguments_are_validated_before_the_api_is_called(rest: RestService) -> None:
    rest.reset()
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        result = await client.call_tool("shop__getItem", {"item_id": "two"})
        assert error_code(result) == "invalid_arguments"
        unknown = await client.call_tool("shop__echoHeaders", {"nope": 1})
        assert error_code(unknown) == "invalid_arguments"
    assert rest.stats()["headers"] == {}  # neither call reached the API


async def test_array_results_are_wrapped_and_recursive_schemas_use_defs(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["shop__listCategories"].output_schema
        assert schema is not None
        assert schema["properties"]["result"]["items"] == {"$ref": "#/$defs/Category"}
        assert schema["$defs"]["Category"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Category"}


# ----------------------------------------------------------------- auth
async def test_api_key_in_a_header(rest: RestService) -> None:
    upstream = shop_upstream(rest, auth={"api_key": {"header": "X-Api-Key", "value": "k3y"}})
    async with Client(shop_plane(rest, upstream).sdk, mode="legacy") as client:
        assert (await client.call_tool("shop__keyed", {})).structured_content == {"ok": True}
    wrong = shop_upstream(rest, auth={"api_key": {"header": "X-Api-Key", "value": "nope"}})
    async with Client(shop_plane(rest, wrong).sdk, mode="legacy") as client:
        assert error_code(await client.call_tool("shop__keyed", {})) == "forbidden"


async def test_api_key_in_a_cookie_beside_a_cookie_parameter(rest: RestService) -> None:
    upstream = shop_upstream(rest, auth={"api_key": {"cookie": "session", "value": "s1"}})
    async with Client(shop_plane(rest, upstream).sdk, mode="legacy") as client:
        result = await client.call_tool("shop__cookies", {"lang": "fr"})
        assert result.structured_content == {"session": "s1", "lang": "fr"}


async def test_secret_references_and_oauth2_client_credentials_with_caching(
    rest: RestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    rest.reset()
    monkeypatch.setenv("SHOP_CLIENT_SECRET", "s3cret")
    oauth = {"token_url": f"{rest.url}/oauth/token", "client_id": "app", "client_secret": "${env:SHOP_CLIENT_SECRET}"}
    upstream = shop_upstream(rest, auth={"oauth2": oauth})
    from mcplane.secrets import Secrets

    tree = Secrets().resolve({"server": {"default_timeout": "10s"}, "upstreams": {"shop": upstream}})
    plane = Gateway.from_config(tree)
    async with Client(plane.sdk, mode="legacy") as client:
        for item_id in (1, 2, 3):
            result = await client.call_tool("shop__getItem", {"item_id": item_id})
            assert not result.is_error, result
    assert rest.stats()["tokens"] == 1  # fetched once, then cached


async def test_a_refused_oauth2_token_is_replaced_at_once(rest: RestService) -> None:
    rest.reset()
    oauth = {"token_url": f"{rest.url}/oauth/token", "client_id": "rotating", "client_secret": "s"}
    async with Client(shop_plane(rest, shop_upstream(rest, auth={"oauth2": oauth})).sdk, mode="legacy") as client:
        first = await client.call_tool("shop__getItem", {"item_id": 1})
        assert not first.is_error, first
        assert not (await client.call_tool("shop__getItem", {"item_id": 2})).is_error
    assert rest.stats()["tokens"] == 2  # the revoked one, then one that lasts


async def test_basic_auth_and_an_api_key_in_the_query(rest: RestService) -> None:
    basic = shop_upstream(rest, auth={"basic": {"username": "ada", "password": "pw"}})
    async with Client(shop_plane(rest, basic).sdk, mode="legacy") as client:
        result = await client.call_tool("shop__echoHeaders", {})
    assert result.structured_content is not None
    assert result.structured_content["headers"]["authorization"] == "Basic YWRhOnB3"
    keyed = shop_upstream(rest, auth={"api_key": {"query": "api_key", "value": "k&1"}})
    async with Client(shop_plane(rest, keyed).sdk, mode="legacy") as client:
        result = await client.call_tool("shop__echoHeaders", {"tenant": "t"})
    assert result.structured_content is not None
    assert result.structured_content["query"] == [["tenant", "t"], ["api_key", "k&1"]]


# ----------------------------------------------------------------- the error mapping, one row each
async def test_400_and_422_are_invalid_arguments_with_the_problem_details(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__createItem", {"name": "x", "price": -1}))
    assert body["code"] == "invalid_arguments"
    assert body["details"]["status"] == 422
    assert body["details"]["body"]["detail"] == "price must not be negative"


async def test_401_and_403_are_forbidden(rest: RestService) -> None:
    upstream = shop_upstream(rest, auth={"bearer": "wrong"})
    async with Client(shop_plane(rest, upstream).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__getItem", {"item_id": 1}))
        assert body["code"] == "forbidden"
        assert body["details"]["status"] == 401
        denied = error_body(await client.call_tool("shop__login", {"username": "a", "password": "no"}))
        assert denied["code"] == "forbidden"
        assert denied["details"]["status"] == 403


async def test_404_is_not_found(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__getItem", {"item_id": 999}))
    assert body["code"] == "not_found"
    assert body["details"]["body"]["title"] == "Not Found"


async def test_429_is_rate_limited_with_retry_after(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__limited", {}))
    assert body["code"] == "rate_limited"
    assert body["retry_after_ms"] == 7000


async def test_5xx_is_upstream_error_with_a_trimmed_body(rest: RestService) -> None:
    async with Client(shop_plane(rest, retries={"attempts": 1}).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__boom", {}))
    assert body["code"] == "upstream_error"
    assert body["details"]["status"] == 500
    assert body["details"]["body"]["detail"] == "the database is on fire"


async def test_other_4xx_is_upstream_error(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__conflict", {}))
    assert body["code"] == "upstream_error"
    assert body["details"]["status"] == 409


async def test_a_redirect_is_not_followed(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__moved", {}))
    assert body["code"] == "upstream_error"
    assert body["details"]["status"] == 302


async def test_connection_failure_is_dependency_unavailable() -> None:
    from tests.conftest import free_port

    dead = RestService(free_port(), proc=None)  # pyright: ignore[reportArgumentType]
    async with Client(shop_plane(dead).sdk, mode="legacy") as client:
        assert error_code(await client.call_tool("shop__getItem", {"item_id": 1})) == "dependency_unavailable"


async def test_a_response_over_the_cap_is_refused(rest: RestService) -> None:
    upstream = shop_upstream(rest, max_response_bytes=4096)
    async with Client(shop_plane(rest, upstream).sdk, mode="legacy") as client:
        body = error_body(await client.call_tool("shop__big", {"size": 100_000}))
        small = await client.call_tool("shop__big", {"size": 10})
    assert body["code"] == "upstream_error"
    assert body["details"]["reason"] == "response_too_large"
    assert not small.is_error


# ----------------------------------------------------------------- resilience
async def test_reads_are_retried_writes_are_not(rest: RestService) -> None:
    rest.reset()
    plane = shop_plane(rest, retries={"attempts": 3, "backoff": "1ms"}, breaker={"failures": 50})
    async with Client(plane.sdk, mode="legacy") as client:
        read = await client.call_tool("shop__flakyRead", {"key": "r", "fails": 2})
        assert read.structured_content == {"attempts": 3}
        write = await client.call_tool("shop__flakyWrite", {"key": "w", "fails": 2})
        assert error_code(write) == "upstream_error"
    assert rest.stats()["flaky"] == {"r": 3, "w": 1}


async def test_a_failing_replica_opens_its_breaker_and_calls_go_to_the_other(rest: RestService) -> None:
    from tests.conftest import free_port

    rest.reset()
    dead = f"http://127.0.0.1:{free_port()}"
    upstream = shop_upstream(rest)
    upstream["openapi"] = {**upstream["openapi"], "base_url": None, "base_urls": [dead, rest.url]}
    plane = shop_plane(rest, upstream, retries={"attempts": 2, "backoff": "1ms"}, breaker={"failures": 1})
    async with Client(plane.sdk, mode="legacy") as client:
        for item_id in range(1, 5):
            result = await client.call_tool("shop__getItem", {"item_id": item_id})
            assert not result.is_error, result
        status = Gateway.provider_of(plane).status()["shop"]
    assert [r["breaker"] for r in status] == ["open", "closed"]


async def test_the_callers_deadline_bounds_a_slow_call_and_travels_as_a_header(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        slow = await client.call_tool("shop__slow", {"seconds": 5}, meta={"mcplane/timeout_ms": 300})
        assert error_code(slow) == "deadline_exceeded"
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        echoed = await client.call_tool(
            "shop__echoHeaders",
            {"X-Request-Tag": "t-1", "tenant": "acme"},
            meta={"mcplane/timeout_ms": 4000, "traceparent": parent},
        )
    assert echoed.structured_content is not None
    headers = echoed.structured_content["headers"]
    assert 0 < int(headers["mcplane-timeout-ms"]) <= 4000
    assert headers["traceparent"] == parent
    assert headers["x-request-tag"] == "t-1"
    assert echoed.structured_content["query"] == [["tenant", "acme"]]


async def test_the_upstream_timeout_answers_timeout(rest: RestService) -> None:
    async with Client(shop_plane(rest, timeout="300ms").sdk, mode="legacy") as client:
        assert error_code(await client.call_tool("shop__slow", {"seconds": 5})) == "timeout"


async def test_health_check_marks_a_replica_down_and_ready_reports_it(rest: RestService) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    upstream = shop_upstream(rest, health_check="/health")
    upstream["openapi"] = {**upstream["openapi"], "base_url": dead}
    plane = shop_plane(rest, upstream)
    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool("shop__getItem", {"item_id": 1})
        assert error_code(result) == "dependency_unavailable"
        assert Gateway.provider_of(plane).status()["shop"][0]["connected"] is False
    healthy = shop_upstream(rest, health_check="/health")
    plane = shop_plane(rest, healthy)
    async with Client(plane.sdk, mode="legacy") as client:
        assert not (await client.call_tool("shop__getItem", {"item_id": 1})).is_error


# ----------------------------------------------------------------- overrides and the code API
async def test_overrides_rename_describe_fix_arguments_and_annotate(rest: RestService) -> None:
    upstream = shop_upstream(
        rest,
        include={"tags": ["misc"]},
        exclude={"methods": ["POST"]},
        operations={
            "echoHeaders": {
                "name": "acme_headers",
                "description": "Headers as the API saw them.",
                "fixed": {"tenant": "acme"},
                "annotations": {"readOnlyHint": False},
            }
        },
    )
    async with Client(shop_plane(rest, upstream).sdk, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "shop__listItems" not in tools
        assert "shop__flakyWrite" not in tools
        assert "shop__flakyRead" in tools
        tool = tools["shop__acme_headers"]
        assert tool.description == "Headers as the API saw them."
        assert "tenant" not in tool.input_schema["properties"]
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is False
        result = await client.call_tool("shop__acme_headers", {})
    assert result.structured_content is not None
    assert result.structured_content["query"] == [["tenant", "acme"]]


async def test_mount_openapi_on_a_plane_beside_local_tools(rest: RestService) -> None:
    plane = Plane("local")

    @plane.tool()
    def ping() -> str:
        return "pong"

    mount_openapi(
        plane, "shop", {"spec": str(rest_spec()), "base_url": rest.url, "auth": {"bearer": "t0ken"}}, timeout="5s"
    )
    async with Client(plane.sdk, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"ping", "shop__getItem"} <= names
        result = await client.call_tool("shop__getItem", {"item_id": 1})
    assert result.structured_content is not None
    assert result.structured_content["id"] == 1


def rest_spec() -> Any:
    from tests.openapi.conftest import SHOP

    return SHOP


async def test_concurrent_calls_share_the_replicas_client(rest: RestService) -> None:
    async with Client(shop_plane(rest).sdk, mode="legacy") as client:
        results: list[Any] = []

        async def one(item_id: int) -> None:
            results.append(await client.call_tool("shop__getItem", {"item_id": item_id}))

        async with anyio.create_task_group() as tg:
            for item_id in range(1, 8):
                tg.start_soon(one, item_id)
    assert sorted(r.structured_content["id"] for r in results) == list(range(1, 8))


async def test_versions_with_a_canary_route_between_openapi_upstreams(rest: RestService) -> None:
    from tests.conftest import free_port

    broken = shop_upstream(rest)
    broken["openapi"] = {**broken["openapi"], "base_url": f"http://127.0.0.1:{free_port()}"}

    def plane(weight: float) -> Plane:
        tree = {
            "server": {"default_timeout": "10s"},
            "upstreams": {"v1": shop_upstream(rest), "v2": {**broken, "retries": {"attempts": 1}}},
            "versions": {
                "items__getItem": {
                    "versions": {"one": {"upstream": "v1"}, "two": {"upstream": "v2"}},
                    "default": "one",
                    "canary": {"version": "two", "weight": weight},
                    "rollback": "off",
                }
            },
        }
        return Gateway.from_config(tree)

    async with Client(plane(0.0).sdk, mode="legacy") as client:
        assert not (await client.call_tool("items__getItem", {"item_id": 1})).is_error
    async with Client(plane(1.0).sdk, mode="legacy") as client:
        result = await client.call_tool("items__getItem", {"item_id": 1})
        assert error_code(result) == "dependency_unavailable"


async def test_a_reload_serves_the_changed_document(rest: RestService, tmp_path: Any) -> None:
    import yaml

    from tests.openapi.conftest import SHOP

    document = yaml.safe_load(SHOP.read_text())
    spec = tmp_path / "shop.yaml"
    spec.write_text(yaml.safe_dump({**document, "paths": {"/items/{item_id}": document["paths"]["/items/{item_id}"]}}))
    config = tmp_path / "gateway.yaml"
    upstream = {"openapi": {"spec": str(spec), "base_url": rest.url, "auth": {"bearer": "t0ken"}}}
    config.write_text(yaml.safe_dump({"upstreams": {"shop": upstream}, "reload": {"watch": False}}))
    plane = Gateway.from_config(config, reload=True)
    provider = Gateway.provider_of(plane)
    async with Client(plane.sdk, mode="legacy") as client:
        before = {t.name for t in (await client.list_tools()).tools}
        assert before == {"shop__getItem", "shop__deleteItem"}
        spec.write_text(yaml.safe_dump(document))  # gateway.yaml unchanged: SIGHUP re-reads the document
        assert provider.reloader is not None
        assert await provider.reloader.reload("SIGHUP")
        after = {t.name for t in (await client.list_tools()).tools}
        assert "shop__listItems" in after
        assert not (await client.call_tool("shop__listItems", {})).is_error
