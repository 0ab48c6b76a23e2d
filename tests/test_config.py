"""``mcplane.yaml``: loading, precise errors, environment overrides, secret references, per-tool
policy globs and the file-wins merge with the decorators; and ``mcplane config check``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcplane import Plane
from mcplane.cli import main
from mcplane.config import PlaneConfig, load_config, merge_policy
from mcplane.errors import ConfigError
from mcplane.secrets import MASK, Secret
from mcplane.tool_policy import ToolPolicy
from tests.conftest import error_of

JWT_SECRET = "jwt-secret-jwt-secret-jwt-secret-42"


def write(tmp_path: Path, text: str, name: str = "mcplane.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **environ: str) -> PlaneConfig:
    return load_config(write(tmp_path, text), environ=environ)


def load_error(tmp_path: Path, text: str, **environ: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    prefix = f"{path}: "
    assert caught.value.message.startswith(prefix), caught.value.message
    return caught.value.message.removeprefix(prefix)


# ------------------------------------------------------------------ reading the file
def test_an_empty_file_configures_no_layer(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.model_dump() == PlaneConfig().model_dump()
    assert config.server.default_timeout == 5.0
    assert config.http.path == "/mcp"
    assert [
        name for name in ("auth", "authorization", "rate_limit", "cache", "budget", "audit") if getattr(config, name)
    ] == []
    assert config.tools == {}


def test_durations_take_seconds_or_units(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
server: {default_timeout: 250ms}
cache: {enabled: true, default_ttl: 5m}
budget: {limit: 10, window: 1h}
tools:
  search: {timeout: 2, cache_ttl: 30s}
""",
    )
    assert config.server.default_timeout == 0.25
    assert config.cache is not None
    assert config.cache.default_ttl == 300.0
    assert config.budget is not None
    assert config.budget.window == 3600.0
    assert config.policy_for("search") == {"timeout": 2.0, "cache_ttl": 30.0}


def test_a_null_default_timeout_means_unbounded(tmp_path: Path) -> None:
    assert load(tmp_path, "server: {default_timeout: null}").server.default_timeout is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tools:\n  slow_*: {timeout: soon}\n",
            "tools.slow_*.timeout: expected a duration such as 2, '2s', '250ms' or '5m', got 'soon'",
        ),
        ("rate_limit: {backnd: redis}\n", "rate_limit.backnd: Extra inputs are not permitted"),
        ("rate_limt: {backend: redis}\n", "rate_limt: Extra inputs are not permitted"),
        ("rate_limit: {backend: redis}\n", "(top level): rate_limit.backend is redis but redis_url is not set"),
        ("tools:\n  x: {cost: -1}\n", "tools.x.cost: Input should be greater than or equal to 0"),
        (
            "tools:\n  x: {rate_limit_scope: everyone}\n",
            "tools.x.rate_limit_scope: Input should be 'principal', 'global' or 'both'",
        ),
        (
            "tools:\n  x: {rate_limit: lots}\n",
            "tools.x.rate_limit: not a rate limit: 'lots' (expected e.g. '100/minute' or '5 per 2 seconds')",
        ),
        (
            "rate_limit: {default: [10/second, 1/fortnight]}\n",
            "rate_limit.default: unknown time unit 'fortnight' in rate limit '1/fortnight'",
        ),
        ("tools:\n  x: {cache_scope: team}\n", "tools.x.cache_scope: Input should be 'private' or 'public'"),
        ("budget: {window: 1h}\n", "budget.limit: Field required"),
        ("audit: {sink: postgres}\n", "audit: audit.sink postgres needs audit.dsn"),
        ("audit: {sink: syslog}\n", "audit.sink: Input should be 'file' or 'postgres'"),
        (
            "audit: {sink: postgres, dsn: postgresql://db/audit, table: audit;drop}\n",
            "audit.table: invalid audit table name 'audit;drop': use 'table' or 'schema.table'",
        ),
        (
            "cache: {enabled: true, encryption_keys: [not-a-fernet-key]}\n",
            "cache.encryption_keys: key #1 is not a valid Fernet key (make one with Fernet.generate_key())",
        ),
        ("authorization: {default: maybe}\n", "authorization.default: Input should be 'allow' or 'deny'"),
        (
            "authorization:\n  tools:\n    x: {role: [a]}\n",
            "authorization.tools.x.role: Extra inputs are not permitted",
        ),
        (
            "auth: {required: true}\n",
            "auth: auth.required is true but no jwt, api_keys, client_certificate or stdio.principal is configured",
        ),
        ("auth:\n  jwt: {issuer: https://i.example}\n", "auth.jwt: jwt needs `keys`, a `jwks_url`, or both"),
        (
            "auth:\n  jwt:\n    audience: a\n    keys: [{secret: short}]\n",
            "auth.jwt.keys.0: an HS256 secret must be at least 32 bytes",
        ),
        ("http: {max_body_bytes: 0}\n", "http.max_body_bytes: Input should be greater than 0"),
        ("server: {nme: x}\nhttp: {pth: /x}\n", "server.nme: Extra inputs are not permitted (and 1 more)"),
    ],
)
def test_a_mistake_names_the_file_and_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    assert load_error(tmp_path, text) == expected


def test_invalid_yaml_names_the_line_and_column(tmp_path: Path) -> None:
    message = load_error(tmp_path, "server:\n  name: x\n  default_timeout: [1s\n")
    assert message.startswith("line 4, column 1: not valid YAML (expected ',' or ']'")


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert load_error(tmp_path, "- server\n- http\n") == "expected a mapping at the top level, got list"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", environ={})
    assert caught.value.message == f"{tmp_path / 'absent.yaml'}: no such config file"


# ------------------------------------------------------------------ environment overrides
def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "server: {name: from-file, default_timeout: 5s}\ncache: {default_ttl: 10s}\n",
        MCPLANE__SERVER__DEFAULT_TIMEOUT="2s",
        MCPLANE__CACHE__ENABLED="true",
        MCPLANE__BUDGET__LIMIT="500",
        MCPLANE__RATE_LIMIT__DEFAULT="100/minute",
    )
    assert config.server.default_timeout == 2.0
    assert config.server.name == "from-file", "an override replaces one key, not its whole section"
    assert config.cache is not None
    assert (config.cache.enabled, config.cache.default_ttl) == (True, 10.0)
    assert config.budget is not None
    assert config.budget.limit == 500
    assert config.rate_limit is not None
    assert config.rate_limit.default == "100/minute"


def test_environment_alone_configures_without_a_file() -> None:
    config = load_config(None, environ={"MCPLANE__AUDIT__PATH": "/var/log/mcplane/audit.jsonl"})
    assert config.audit is not None
    assert config.audit.path == "/var/log/mcplane/audit.jsonl"


def test_environment_names_are_case_insensitive_and_others_are_ignored(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "",
        mcplane__server__name="lower",
        MCPLANE_CONFIG="elsewhere.yaml",
        MCPLANE_TOKEN="not-config",
        MCPLANE__="nothing",
    )
    assert config.server.name is None, "the prefix itself is upper case"
    config = load(tmp_path, "", MCPLANE__Server__Name="mixed")
    assert config.server.name == "mixed"


def test_a_bad_override_names_the_key_path(tmp_path: Path) -> None:
    message = load_error(tmp_path, "", MCPLANE__SERVER__DEFAULT_TIMEOUT="soon")
    assert message == "server.default_timeout: expected a duration such as 2, '2s', '250ms' or '5m', got 'soon'"
    assert load_error(tmp_path, "", MCPLANE__SERVER__TIMEOUT="1s") == "server.timeout: Extra inputs are not permitted"


@pytest.mark.parametrize("order", ["section-first", "key-first"])
def test_overrides_of_a_section_and_of_its_key_conflict(order: str) -> None:
    pairs = [("MCPLANE__SERVER", "x"), ("MCPLANE__SERVER__NAME", "y")]
    environ = dict(pairs if order == "section-first" else reversed(pairs))
    with pytest.raises(ConfigError, match="conflicts with another override"):
        load_config(None, environ=environ)


# ------------------------------------------------------------------ secret references
def test_secret_references_resolve_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "dsn.txt").write_text("postgresql://audit:pg-pass@db/audit\n", encoding="utf-8")
    config = load(
        tmp_path,
        """
redis_url: "redis://:${env:REDIS_PASSWORD}@cache.internal:6379/0"
auth:
  jwt:
    audience: https://mcp.example.com/mcp
    keys: [{secret: "${env:JWT_SECRET}"}]
audit: {sink: postgres, dsn: "${file:dsn.txt}"}
""",
        REDIS_PASSWORD="redis-pass",
        JWT_SECRET=JWT_SECRET,
    )
    assert isinstance(config.redis_url, Secret)
    assert config.redis_url.get() == "redis://:redis-pass@cache.internal:6379/0"
    assert config.audit is not None
    assert config.audit.dsn is not None
    assert config.audit.dsn.get() == "postgresql://audit:pg-pass@db/audit", "file paths are relative to the config"
    assert config.auth is not None
    assert config.auth.jwt is not None
    secret = config.auth.jwt.keys[0].secret
    assert secret is not None
    assert secret.get_secret_value() == JWT_SECRET
    shown = repr(config) + str(config.model_dump()) + config.model_dump_json()
    for value in ("redis-pass", "pg-pass", JWT_SECRET):
        assert value not in shown
    assert "${env:REDIS_PASSWORD}" in repr(config.redis_url)
    assert config.model_dump()["redis_url"] == MASK
    assert config.secrets is not None
    dsn = "postgresql://audit:pg-pass@db/audit"
    assert config.secrets.redact(f"auth redis-pass then {dsn}") == f"auth {MASK} then {MASK}"


def test_an_unresolvable_reference_names_the_reference(tmp_path: Path) -> None:
    path = write(tmp_path, 'redis_url: "${env:REDIS_URL}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.message == "secret reference ${env:REDIS_URL}: environment variable 'REDIS_URL' is not set"


def test_an_escaped_reference_is_literal_text(tmp_path: Path) -> None:
    config = load(tmp_path, 'server: {name: "$${env:NAME}"}\n', NAME="resolved")
    assert config.server.name == "${env:NAME}"


def test_an_override_may_hold_a_secret_reference(tmp_path: Path) -> None:
    config = load(tmp_path, "", MCPLANE__REDIS_URL="${env:REDIS_URL}", REDIS_URL="redis://10.0.0.5:6379/1")
    assert isinstance(config.redis_url, Secret)
    assert config.redis_url.get() == "redis://10.0.0.5:6379/1"


# ------------------------------------------------------------------ tool policy globs
GLOBS = """
tools:
  "*": {timeout: 9s, retryable: false}
  "a*": {cost: 5}
  "admin_*": {timeout: 2s, roles: [admin]}
  admin_reset: {timeout: 1s}
"""


def test_the_most_specific_pattern_wins_and_the_others_fill_in(tmp_path: Path) -> None:
    config = load(tmp_path, GLOBS)
    assert config.policy_for("admin_reset") == {"timeout": 1.0, "retryable": False, "cost": 5, "roles": ["admin"]}
    assert config.policy_for("admin_stats") == {"timeout": 2.0, "retryable": False, "cost": 5, "roles": ["admin"]}
    assert config.policy_for("audit_log") == {"timeout": 9.0, "retryable": False, "cost": 5}
    assert config.policy_for("billing") == {"timeout": 9.0, "retryable": False}


def test_an_exact_name_beats_a_longer_glob(tmp_path: Path) -> None:
    config = load(tmp_path, 'tools:\n  "search_everything_*": {timeout: 2s}\n  search_everything_now: {timeout: 3s}\n')
    assert config.policy_for("search_everything_now") == {"timeout": 3.0}


@pytest.mark.parametrize("first", ["admin_*", "*_stats"])
def test_between_equally_specific_globs_the_one_written_first_wins(tmp_path: Path, first: str) -> None:
    second = "*_stats" if first == "admin_*" else "admin_*"
    config = load(tmp_path, f'tools:\n  "{first}": {{timeout: 1s}}\n  "{second}": {{timeout: 2s}}\n')
    assert config.policy_for("admin_stats") == {"timeout": 1.0}


def test_globs_are_case_sensitive_and_anchored(tmp_path: Path) -> None:
    config = load(tmp_path, 'tools:\n  "admin_*": {timeout: 2s}\n')
    assert config.policy_for("Admin_stats") == {}
    assert config.policy_for("x_admin_stats") == {}


# ------------------------------------------------------------------ file over decorator
def make_plane() -> Plane:
    plane = Plane("config-test")

    @plane.tool(timeout="5s", rate_limit="10/minute", roles=["ops"], cost=3)
    async def slow_export() -> str:
        return "exported"

    @plane.tool()
    async def nap() -> str:
        await anyio.sleep(5)
        return "rested"

    return plane


def test_the_file_overrides_the_decorator_key_by_key(tmp_path: Path) -> None:
    plane = make_plane()
    assert plane.policy_for("slow_export") == ToolPolicy.from_mapping(
        {"timeout": 5.0, "rate_limit": "10/minute", "roles": ["ops"], "cost": 3}
    )
    config = load(tmp_path, 'tools:\n  "slow_*": {timeout: 100ms, roles: [admin]}\n')
    plane.configure(config)
    assert plane.policy_for("slow_export") == ToolPolicy.from_mapping(
        {"timeout": 0.1, "rate_limit": "10/minute", "roles": ["admin"], "cost": 3}
    )
    assert plane.code_policy("slow_export").timeout == 5.0, "the decorator's own policy is kept"
    assert merge_policy(plane.code_policy("slow_export"), config, "slow_export") == plane.policy_for("slow_export")
    assert plane.policy_for("nap") == ToolPolicy()

    plane.configure(load(tmp_path, 'tools:\n  "slow_*": {timeout: 250ms}\n'))
    assert plane.policy_for("slow_export").timeout == 0.25, "configuring again replaces the earlier file"
    assert plane.policy_for("slow_export").roles == ("ops",)


async def test_the_files_default_timeout_bounds_undeclared_tools(tmp_path: Path) -> None:
    plane = make_plane()
    plane.configure(load(tmp_path, "server: {default_timeout: 100ms}\n"))
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            result = await client.call_tool("nap", {})
    assert result.is_error is True
    assert error_of(result)["code"] == "timeout"


async def test_the_file_can_turn_off_a_decorators_cache(tmp_path: Path) -> None:
    plane = Plane("cache-off")
    runs: list[str] = []

    @plane.tool(cache_ttl="5m")
    def lookup(key: str) -> int:
        runs.append(key)
        return len(runs)

    plane.configure(load(tmp_path, "tools:\n  lookup: {cache_ttl: 0}\n"))
    assert plane.policy_for("lookup") == ToolPolicy(cache_ttl=0.0)
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            first = await client.call_tool("lookup", {"key": "k"})
            second = await client.call_tool("lookup", {"key": "k"})
    assert (first.structured_content, second.structured_content) == ({"result": 1}, {"result": 2})


async def test_a_running_plane_refuses_a_new_config(tmp_path: Path) -> None:
    plane = make_plane()
    async with plane.lifespan():
        with pytest.raises(ConfigError, match="configure the plane before it starts"):
            plane.configure(load(tmp_path, ""))


# ------------------------------------------------------------------ mcplane config check
@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outcome]:
    """``mcplane ARGS`` in this process (the function the console script runs)."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def run(*args: str) -> Outcome:
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def one_line_error(outcome: Outcome) -> str:
    assert outcome.returncode == 1
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("mcplane: error: ")
    return lines[0].removeprefix("mcplane: error: ")


def test_config_check_summarises_a_good_file(
    cli: Callable[..., Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPLANE_TEST_JWT_SECRET", JWT_SECRET)
    path = write(
        tmp_path,
        """
redis_url: redis://127.0.0.1:6379/0
auth:
  jwt: {audience: https://mcp.example.com/mcp, keys: [{secret: "${env:MCPLANE_TEST_JWT_SECRET}"}]}
rate_limit: {backend: redis}
audit: {path: audit.jsonl}
tools:
  "a*": {timeout: 1s}
  b: {cost: 2}
""",
    )
    outcome = cli("config", "check", str(path))
    assert (outcome.returncode, outcome.stderr) == (0, "")
    assert outcome.stdout.splitlines() == [
        f"ok: {path}",
        "  layers configured: auth, rate_limit, audit",
        "  tool policies: 2 pattern(s); redis: yes",
    ]
    assert JWT_SECRET not in outcome.stdout


def test_config_check_of_an_empty_file(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    outcome = cli("config", "check", str(write(tmp_path, "")))
    assert outcome.returncode == 0
    assert "layers configured: none" in outcome.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tools:\n  slow_*: {timeout: soon}\n", "{path}: tools.slow_*.timeout: expected a duration"),
        ("server:\n  name: [x\n", "{path}: line 3, column 1: not valid YAML"),
        ('redis_url: "${env:MCPLANE_TEST_UNSET_VAR}"\n', "secret reference ${env:MCPLANE_TEST_UNSET_VAR}: environment"),
        ("cache: {enabled: yes please}\n", "{path}: cache.enabled: Input should be a valid boolean"),
    ],
)
def test_config_check_of_a_bad_file_is_one_line(
    cli: Callable[..., Outcome], tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    message = one_line_error(cli("config", "check", str(path)))
    assert message.startswith(expected.replace("{path}", str(path))), message


def test_config_check_of_a_missing_file(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    assert (
        one_line_error(cli("config", "check", str(tmp_path / "nope.yaml")))
        == f"{tmp_path / 'nope.yaml'}: no such config file"
    )


def test_run_with_a_bad_config_is_one_line_and_starts_nothing(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("from mcplane import Plane\nplane = Plane('x')\n", encoding="utf-8")
    path = write(tmp_path, "rate_limit: {backend: redis}\n")
    message = one_line_error(cli("run", str(app), "--transport", "http", "--port", "0", "--config", str(path)))
    assert message == f"{path}: (top level): rate_limit.backend is redis but redis_url is not set"
