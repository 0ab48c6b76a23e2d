"""deploy/docker/Dockerfile, checked statically (no Docker engine here): stages, pinned base image,
non-root user, HEALTHCHECK, ENTRYPOINT and CMD against the code they run.

Running the HEALTHCHECK command against a live server is in test_probes.py; building the image for
real (podman) and running it from its own root file system is in test_image.py."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import re
import tomllib

import pytest

from mcplane.cli import _parser
from mcplane.config import load_config
from tests.conftest import REPO_ROOT
from tests.deploy.deploy_support import (
    DOCKERFILE,
    Instruction,
    console_scripts,
    env_pairs,
    flags_and_rest,
    parse_dockerfile,
)

INSTRUCTIONS = parse_dockerfile(DOCKERFILE)
PINNED_TAG = re.compile(r"^\d+\.\d+\.\d+([.-][\w.-]+)?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _all(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and (stage is None or i.stage == stage)]


def _final_stage() -> int:
    return max(i.stage for i in INSTRUCTIONS)


def _one(keyword: str) -> Instruction:
    found = _all(keyword, _final_stage())
    assert len(found) == 1, f"the runtime stage needs exactly one {keyword}, found {len(found)}"
    return found[0]


def _global_args() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in _all("ARG", -1):
        values |= env_pairs(instruction.args)
    return values


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def _stages() -> list[tuple[str, str | None]]:
    """(base image, stage name) of each FROM, build args expanded."""
    stages = []
    for instruction in _all("FROM"):
        _, rest = flags_and_rest(instruction.args)
        image, _, name = rest.partition(" AS ") if " AS " in rest else rest.partition(" as ")
        stages.append((_expand(image.strip(), _global_args()), name.strip() or None))
    return stages


def _runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in _all("ENV", _final_stage()):
        env |= env_pairs(instruction.args)
    return env


def _parse_cli(args: list[str]) -> argparse.Namespace:
    try:
        return _parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`mcplane {' '.join(args)}` is not a valid mcplane command line")


def test_multi_stage_build_wheel_then_slim_runtime() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build and runtime stages"
    names = [name for _, name in stages]
    assert "build" in names
    build = names.index("build")
    build_runs = " ".join(i.args for i in _all("RUN", build))
    assert re.search(r"pip wheel|python -m build", build_runs), "the build stage builds wheels"
    installs = [i for i in _all("RUN", _final_stage()) if "pip install" in i.args]
    assert installs, "the runtime installs mcplane"
    for install in installs:
        flags, command = flags_and_rest(install.args)
        assert "--no-index" in command, "the runtime installs offline, from the build stage's wheels only"
        assert "from=build" in flags.get("mount", ""), "the wheels come from the build stage"
        assert re.search(r"\bmcplane(\[[\w,]+\])?\b", command)
    assert not [i for i in _all("COPY", _final_stage()) if "src" in i.args.split()], "no source tree in the runtime"


def test_the_image_installs_declared_extras_including_the_trace_exporter() -> None:
    (install,) = [i for i in _all("RUN", _final_stage()) if "pip install" in i.args]
    match = re.search(r"\bmcplane\[([\w,]+)\]", install.args)
    assert match is not None, "the runtime installs mcplane with extras"
    extras = set(match.group(1).split(","))
    assert "otel" in extras, "tracing (deploy/compose.yaml enables it) needs the OpenTelemetry SDK and exporter"
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    if "otel" not in declared:
        pytest.skip("pyproject.toml declares no `otel` extra yet: the image would have no OTLP exporter")
    assert extras <= set(declared), f"extras pyproject.toml does not declare: {sorted(extras - set(declared))}"
    assert any(dep.startswith("opentelemetry") for dep in declared["otel"])


def test_base_images_are_pinned_slim_and_the_same_in_every_stage() -> None:
    images = {image for image, _ in _stages() if not any(image == name for _, name in _stages())}
    assert len(images) == 1, f"one base image for every stage (compiled wheels must match): {images}"
    (image,) = images
    assert "$" not in image, f"unresolved build argument in {image!r}"
    assert "slim" in image
    if not DIGEST.search(image):
        repository, _, tag = image.rpartition(":")
        assert repository, f"{image!r} has no tag"
        assert "/" not in tag, f"{image!r} has no tag"
        assert PINNED_TAG.match(tag), f"{image!r}: pin an exact version tag (3.12.8-slim-...) or a digest"
    python = re.search(r":(\d+)\.(\d+)\.", image)
    assert python is not None
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in re.findall(r"\d+", requires)[:2])
    assert (int(python.group(1)), int(python.group(2))) >= minimum, f"{image} is older than requires-python"


def test_runs_as_a_numeric_non_root_user_the_image_creates() -> None:
    user = _one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    runs = " ".join(i.args for i in _all("RUN", _final_stage()))
    assert re.search(rf"useradd\b.*--uid {uid}\b", runs), f"uid {uid} is created with useradd"
    user_at = INSTRUCTIONS.index(_one("USER"))
    later_roots = [i for i in INSTRUCTIONS[user_at + 1 :] if i.keyword == "USER"]
    assert not later_roots


def test_copy_sources_exist_and_pass_the_dockerignore() -> None:
    ignore_file = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    rules = [line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negate
        return keep

    copies = [i for i in _all("COPY") if "from" not in flags_and_rest(i.args)[0]]
    assert copies
    for instruction in copies:
        *sources, _destination = flags_and_rest(instruction.args)[1].split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the build context (the repository root)"
            assert included(source.rstrip("/")), f"COPY {source}: excluded by {ignore_file.name}"


def test_entrypoint_is_the_console_script_and_cmd_serves_http_on_all_interfaces() -> None:
    entrypoint = _one("ENTRYPOINT").exec_form()
    assert entrypoint is not None, "exec form, so signals reach mcplane (graceful drain on SIGTERM)"
    assert len(entrypoint) == 1
    scripts = console_scripts()
    assert entrypoint[0] in scripts, f"{entrypoint[0]} is not declared in [project.scripts]"
    module, _, function = scripts[entrypoint[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))

    cmd = _one("CMD").exec_form()
    assert cmd is not None
    args = _parse_cli(cmd)
    assert (args.command, args.transport, args.host) == ("run", "http", "0.0.0.0")
    assert str(args.port) in _one("EXPOSE").args.split()
    health_url = _runtime_env()["MCPLANE_HEALTH_URL"]
    assert health_url == f"http://127.0.0.1:{args.port}/health"


def test_healthcheck_probes_health_with_python_urllib() -> None:
    healthcheck = _one("HEALTHCHECK")
    options, command = flags_and_rest(healthcheck.args)
    assert {"interval", "timeout", "retries"} <= set(options)
    assert command.startswith("CMD ")
    argv = Instruction("CMD", command[4:], healthcheck.stage).exec_form()
    assert argv is not None, "exec form"
    assert argv[:2] == ["python", "-c"], "no curl in a slim image: python's urllib"
    assert "urllib.request.urlopen" in argv[2]
    assert "MCPLANE_HEALTH_URL" in argv[2]
    assert _runtime_env()["MCPLANE_HEALTH_URL"].endswith("/health")
    served = (REPO_ROOT / "src" / "mcplane" / "transports" / "tier" / "probes.py").read_text()
    assert 'path == "/health"' in served, "the HTTP tier no longer serves /health"


def test_default_config_is_where_mcplane_config_points_and_loads() -> None:
    config_path = _runtime_env()["MCPLANE_CONFIG"]
    copied = {}
    for instruction in _all("COPY", _final_stage()):
        flags, rest = flags_and_rest(instruction.args)
        if "from" not in flags:
            source, destination = rest.split()
            copied[destination] = source
    assert config_path in copied, f"MCPLANE_CONFIG={config_path} is not copied into the image"
    config = load_config(REPO_ROOT / copied[config_path], environ={})
    assert config.server.default_timeout is not None
