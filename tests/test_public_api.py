"""The public surface is exactly ``mcplane.__all__``; growing it is a decision, made here."""

from __future__ import annotations

import re

import mcplane

PUBLIC_API = [
    "ANONYMOUS",
    "Budget",
    "BudgetExceeded",
    "Call",
    "CircuitOpen",
    "Client",
    "ConfigError",
    "Context",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "Forbidden",
    "Inject",
    "InternalError",
    "InvalidArguments",
    "MCPlaneError",
    "NonBlank",
    "NotFound",
    "Pipeline",
    "Plane",
    "PlaneConfig",
    "Principal",
    "RateLimited",
    "RetryPolicy",
    "Timeout",
    "ToolFailed",
    "Unauthenticated",
    "UpstreamError",
    "__version__",
    "load_config",
    "websocket_client",
]


def test_all_is_pinned() -> None:
    assert mcplane.__all__ == PUBLIC_API


def test_all_is_sorted_and_unique() -> None:
    assert mcplane.__all__ == sorted(set(mcplane.__all__))


def test_every_public_name_resolves() -> None:
    for name in mcplane.__all__:
        assert getattr(mcplane, name) is not None, name


def test_no_other_public_names_leak_from_the_package() -> None:
    public = {name for name in vars(mcplane) if not name.startswith("_")}
    submodules = {name for name, value in vars(mcplane).items() if type(value).__name__ == "module"}
    assert public - submodules == set(PUBLIC_API) - {"__version__"}


def test_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev)\d*)?", mcplane.__version__)
