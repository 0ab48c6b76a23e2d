"""Secret references: env, file and Vault (KV v2 over a tiny local HTTP server), refresh, redaction.

And the point of it all: a secret value never shows up in logs, errors or audit records.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ValidationError

from mcplane import ConfigError, Context, Principal
from mcplane.audit import JsonlSink
from mcplane.middleware.audit import AuditMiddleware
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.pipeline import Call, Pipeline
from mcplane.secrets import MASK, RedactingFilter, Secret, Secrets, VaultSettings

DB_PASSWORD = "pw-Zq81-never-show-me"
VAULT_TOKEN = "hvs.test-token-do-not-leak"


class FakeVault:
    """Speaks Vault's KV v2 read API: ``GET /v1/<mount>/data/<path>`` → ``{"data": {"data": {...}}}``."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                vault.reads.append(self.path)
                if self.headers.get("X-Vault-Token") != VAULT_TOKEN:
                    return self._reply(403, {"errors": ["permission denied"]})
                mount, _, rest = self.path.removeprefix("/v1/").partition("/")
                key = f"{mount}/{rest.removeprefix('data/')}" if rest.startswith("data/") else None
                if key is None or key not in vault.secrets:
                    return self._reply(404, {"errors": []})
                metadata = {"created_time": "2026-01-01T00:00:00Z", "deletion_time": "", "destroyed": False}
                body = {"data": {"data": vault.secrets[key], "metadata": {**metadata, "version": 1}}}
                return self._reply(200, {"request_id": "r1", "lease_id": "", "renewable": False, **body})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    fake = FakeVault()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _logger_output(secrets: Secrets) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(detail)s"))
    handler.addFilter(secrets.logging_filter())
    log = logging.getLogger(f"mcplane.test.secrets.{id(stream)}")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, stream


# ---------------------------------------------------------------------- the Secret type
def test_a_secret_never_shows_its_value() -> None:
    secret = Secret(DB_PASSWORD, "${env:DB_PASSWORD}")
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        str([secret]),
        str({"k": secret}),
    ]
    assert all(DB_PASSWORD not in text for text in shown)
    assert repr(secret) == "Secret('${env:DB_PASSWORD}')"
    assert str(Secret("x")) == MASK
    assert repr(Secret("x")) == f"Secret({MASK!r})"
    assert secret.get() == DB_PASSWORD
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(secret)


def test_a_secret_is_a_pydantic_field_type_that_dumps_masked() -> None:
    class Settings(BaseModel):
        dsn: Secret
        name: str = "x"

    secrets = Secrets(environ={"DB_PASSWORD": DB_PASSWORD})
    settings = Settings.model_validate(secrets.resolve({"dsn": "postgresql://app:${env:DB_PASSWORD}@db/app"}))
    assert settings.dsn.get() == f"postgresql://app:{DB_PASSWORD}@db/app"
    assert Settings(dsn="literal").dsn.get() == "literal"  # type: ignore[arg-type]
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert DB_PASSWORD not in shown
    assert settings.model_dump()["dsn"] == MASK
    assert Settings.model_json_schema()["properties"]["dsn"]["type"] == "string"
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"dsn": 5})
    assert "expected a string" in str(caught.value)


def test_a_secret_in_a_plain_string_field_fails_validation_without_showing_itself() -> None:
    class Settings(BaseModel):
        dsn: str

    secrets = Secrets(environ={"DB_PASSWORD": DB_PASSWORD})
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate(secrets.resolve({"dsn": "${env:DB_PASSWORD}"}))
    assert DB_PASSWORD not in str(caught.value)


# ---------------------------------------------------------------------- resolving
def test_env_and_file_references_resolve_in_nested_config(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("key-from-file\n")
    secrets = Secrets(environ={"DB_PASSWORD": DB_PASSWORD, "USER": "app"}, base_dir=tmp_path)
    config = secrets.resolve(
        {
            "db": {"dsn": "postgresql://${env:USER}:${env:DB_PASSWORD}@db/app", "pool": 5},
            "keys": ["${file:api_key}", "plain"],
            "note": "costs $${env:USD} each",
        }
    )
    dsn, key = config["db"]["dsn"], config["keys"][0]
    assert isinstance(dsn, Secret)
    assert dsn.get() == f"postgresql://app:{DB_PASSWORD}@db/app"
    assert isinstance(key, Secret)
    assert key.get() == "key-from-file"
    assert config["db"]["pool"] == 5
    assert config["keys"][1] == "plain"
    assert config["note"] == "costs ${env:USD} each"
    assert DB_PASSWORD not in repr(config)


def test_a_literal_value_can_be_held_as_a_secret() -> None:
    secrets = Secrets(environ={})
    literal = secrets.secret("literal-password-42")
    assert literal.get() == "literal-password-42"
    assert repr(literal) == f"Secret({MASK!r})"
    assert secrets.redact("pw=literal-password-42") == f"pw={MASK}"
    assert secrets.resolve("no reference here") == "no reference here"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("${env:MISSING}", "environment variable 'MISSING' is not set"),
        ("${file:/no/such/file}", "cannot read the file"),
        ("${vault:secret-without-key}", "write it as"),
    ],
)
def test_an_unresolvable_reference_is_a_config_error_naming_it(reference: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Secrets(environ={"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t"}).resolve({"x": reference})
    assert reference.split("}")[0] in str(caught.value)


def test_vault_kv2_secrets_resolve_one_read_per_path(vault: FakeVault) -> None:
    vault.secrets["secret/app/db"] = {"password": DB_PASSWORD, "user": "app", "port": 5432}
    secrets = Secrets(vault=VaultSettings(vault.url, Secret(VAULT_TOKEN)))
    config = secrets.resolve(
        {
            "password": "${vault:secret/app/db#password}",
            "user": "${vault:secret/app/db#user}",
            "port": "${vault:secret/app/db#port}",
        }
    )
    assert config["password"].get() == DB_PASSWORD
    assert (config["user"].get(), config["port"].get()) == ("app", "5432")
    assert vault.reads == ["/v1/secret/data/app/db"]


def test_vault_settings_come_from_the_environment(vault: FakeVault) -> None:
    vault.secrets["kv/team/api"] = {"token": "abc123"}
    secrets = Secrets(environ={"VAULT_ADDR": vault.url, "VAULT_TOKEN": VAULT_TOKEN})
    assert secrets.secret("${vault:kv/team/api#token}").get() == "abc123"


@pytest.mark.parametrize(
    ("reference", "token", "message"),
    [
        ("${vault:secret/app/db#password}", "wrong-token", "Forbidden"),
        ("${vault:secret/app/none#password}", VAULT_TOKEN, "InvalidPath"),
        ("${vault:secret/app/db#nokey}", VAULT_TOKEN, "no key 'nokey'"),
    ],
)
def test_vault_failures_are_config_errors_without_values(
    vault: FakeVault, reference: str, token: str, message: str
) -> None:
    vault.secrets["secret/app/db"] = {"password": DB_PASSWORD}
    secrets = Secrets(vault=VaultSettings(vault.url, token))
    with pytest.raises(ConfigError, match=message) as caught:
        secrets.resolve(reference)
    assert DB_PASSWORD not in str(caught.value)
    assert token not in str(caught.value)


# ---------------------------------------------------------------------- refreshing
def test_refresh_follows_the_clock_and_updates_secrets_in_place(vault: FakeVault) -> None:
    vault.secrets["secret/app/db"] = {"password": "old-password-1"}
    environ = {"API_KEY": "old-key-1"}
    clock = Clock()
    secrets = Secrets(environ=environ, vault=VaultSettings(vault.url, VAULT_TOKEN), refresh_interval=60.0, clock=clock)
    password = secrets.secret("${vault:secret/app/db#password}")
    key = secrets.secret("${env:API_KEY}")
    vault.secrets["secret/app/db"] = {"password": "new-password-2"}
    environ["API_KEY"] = "new-key-2"
    clock.now = 59.0
    assert anyio.run(secrets.refresh_if_due) is None
    assert (password.get(), key.get()) == ("old-password-1", "old-key-1")
    clock.now = 60.0
    assert anyio.run(secrets.refresh_if_due) == []
    assert (password.get(), key.get()) == ("new-password-2", "new-key-2")
    assert secrets.redact("old-key-1 new-key-2 old-password-1") == f"{MASK} {MASK} {MASK}"


def test_a_failed_refresh_keeps_the_last_value_and_logs_no_value(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"API_KEY": "key-value-1"}
    secrets = Secrets(environ=environ)
    key = secrets.secret("${env:API_KEY}")
    del environ["API_KEY"]
    with caplog.at_level(logging.ERROR, logger="mcplane.secrets"):
        assert secrets.refresh() == ["${env:API_KEY}"]
    assert key.get() == "key-value-1"
    assert "API_KEY" in caplog.text
    assert "key-value-1" not in caplog.text


async def test_run_refreshes_on_each_trigger() -> None:
    environ = {"API_KEY": "v1"}
    secrets = Secrets(environ=environ, refresh_interval=30.0)
    key = secrets.secret("${env:API_KEY}")
    send, receive = anyio.create_memory_object_stream[None](1)
    waited: list[float] = []
    refreshed = anyio.Event()

    async def trigger(interval: float) -> None:
        waited.append(interval)
        if len(waited) == 2:
            refreshed.set()
        await receive.receive()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: secrets.run(wait=trigger))
        environ["API_KEY"] = "v2"
        await send.send(None)
        with anyio.fail_after(5):
            await refreshed.wait()
        tg.cancel_scope.cancel()
    assert key.get() == "v2"
    assert waited == [30.0, 30.0]
    send.close()
    receive.close()


# ---------------------------------------------------------------------- never in logs, errors, audit records
def test_the_filter_masks_values_in_messages_exceptions_and_extras() -> None:
    secrets = Secrets(environ={"DB_PASSWORD": DB_PASSWORD})
    dsn = secrets.secret("postgresql://app:${env:DB_PASSWORD}@db/app")
    log, out = _logger_output(secrets)
    log.info("connecting with %s", dsn.get(), extra={"detail": f"pw={DB_PASSWORD}"})
    log.warning(f"inline {DB_PASSWORD}", extra={"detail": ""})
    try:
        raise RuntimeError(f"auth failed for {dsn.get()}")
    except RuntimeError:
        log.exception("db down", extra={"detail": ""})
    text = out.getvalue()
    assert DB_PASSWORD not in text
    assert text.count(MASK) >= 4
    assert "RuntimeError: auth failed for" in text
    assert isinstance(secrets.logging_filter(), RedactingFilter)


async def test_secret_values_never_reach_logs_errors_or_audit_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = Secrets(environ={"DB_PASSWORD": DB_PASSWORD})
    password = secrets.secret("${env:DB_PASSWORD}")
    redacting = secrets.logging_filter()
    caplog.handler.addFilter(redacting)
    sink = JsonlSink(tmp_path / "audit.jsonl")
    pipeline = Pipeline()
    pipeline.set("errors", ErrorsMiddleware())
    pipeline.set("audit", AuditMiddleware(sink))

    async def tool(call: Call) -> Any:
        raise RuntimeError(f"could not log in with {password.get()} ({password})")

    chain = pipeline.compose(tool)
    ctx = Context(principal=Principal("alice"), correlation_id="cid-secret")
    try:
        with caplog.at_level(logging.DEBUG):
            result = await chain(Call("tool", "login", {"password": password.get()}, ctx))
    finally:
        caplog.handler.removeFilter(redacting)
        await sink.aclose()
    wire = result.model_dump_json(by_alias=True)
    assert result.is_error
    assert "internal_error" in wire
    assert "cid-secret" in wire
    assert DB_PASSWORD not in wire
    audit_text = (tmp_path / "audit.jsonl").read_text()
    assert "login" in audit_text
    assert DB_PASSWORD not in audit_text
    assert "crashed" in caplog.text
    assert DB_PASSWORD not in caplog.text


def test_redact_all_logs_covers_loggers_and_handlers_made_later(caplog: pytest.LogCaptureFixture) -> None:
    from mcplane.secrets import redact_all_logs

    secrets = Secrets(environ={"LATE_TOKEN": "tok-5f1e-late-value"})
    secrets.resolve({"token": "${env:LATE_TOKEN}"})
    redact_all_logs(secrets)
    redact_all_logs(secrets)  # idempotent: one factory per resolver
    late = logging.getLogger("mcplane.tests.late-logger")
    with caplog.at_level(logging.INFO, logger="mcplane.tests.late-logger"):
        late.info("connecting with %s", "tok-5f1e-late-value")
        try:
            raise RuntimeError("failed with tok-5f1e-late-value")
        except RuntimeError:
            late.exception("boom")
    assert "tok-5f1e-late-value" not in caplog.text
    assert "**********" in caplog.text


def test_redact_all_logs_installs_one_factory_however_many_resolvers_register(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mcplane.secrets import redact_all_logs, stop_redacting_logs

    resolvers = [Secrets(environ={"MANY_TOKEN": f"tok-many-{n}-value"}) for n in range(5)]
    for resolver in resolvers:
        resolver.resolve({"token": "${env:MANY_TOKEN}"})
    try:
        redact_all_logs(resolvers[0])
        factory = logging.getLogRecordFactory()
        for resolver in resolvers[1:]:
            redact_all_logs(resolver)
        assert logging.getLogRecordFactory() is factory
        many = logging.getLogger("mcplane.tests.many-resolvers")
        with caplog.at_level(logging.INFO, logger="mcplane.tests.many-resolvers"):
            for n in range(5):
                many.info("token %s", f"tok-many-{n}-value")
        assert [record.getMessage() for record in caplog.records] == ["token **********"] * 5
    finally:
        for resolver in resolvers:
            stop_redacting_logs(resolver)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mcplane.tests.many-resolvers"):
        logging.getLogger("mcplane.tests.many-resolvers").info("token %s", "tok-many-0-value")
    assert caplog.records[0].getMessage() == "token tok-many-0-value", "an unregistered resolver masks nothing"
    assert logging.getLogRecordFactory() is factory
