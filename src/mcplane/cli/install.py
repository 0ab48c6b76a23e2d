"""``mcplane install claude-desktop|cursor|vscode TARGET``: add a Plane to an MCP client's config.

The entry starts ``mcplane run TARGET`` over stdio with absolute paths: this environment's
``mcplane`` executable (clients start servers without the user's shell, so a bare ``mcplane``
or a virtualenv that is not activated is not found) and the target file. The target is loaded
first, as ``mcplane run`` would, so a broken file is reported here rather than in the client;
its Plane's name is the entry's name unless ``--name`` says otherwise.

The file is merged, not replaced: other servers and other settings stay as they are, an entry
of the same name is updated. ``--dry-run`` prints the whole file it would write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["CLIENTS", "default_config_path", "install", "mcplane_command", "server_entry"]

CLIENTS = {
    "claude-desktop": ("Claude Desktop", "mcpServers"),
    "cursor": ("Cursor", "mcpServers"),
    "vscode": ("VS Code", "servers"),
}
"""Client → (its name, the key its config keeps servers under)."""


def default_config_path(client: str) -> Path:
    """Where ``client`` reads its MCP servers from on this platform (for this user, or, for VS
    Code, this workspace: the current directory)."""
    home = Path.home()
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    if client == "vscode":
        return Path.cwd() / ".vscode" / "mcp.json"
    if sys.platform == "darwin":
        folder = home / "Library" / "Application Support" / "Claude"
    elif sys.platform == "win32":
        folder = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "Claude"
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "Claude"
    return folder / "claude_desktop_config.json"


def mcplane_command() -> list[str]:
    """This environment's ``mcplane`` as an absolute command (no reliance on PATH or an activated venv)."""
    here = Path(sys.executable).absolute().parent
    for name in ("mcplane", "mcplane.exe"):
        if (here / name).is_file():
            return [str(here / name)]
    found = shutil.which("mcplane")
    if found is not None:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "mcplane.cli"]


def absolute_target(target: str) -> str:
    """``file.py[:object]`` with the file's absolute path; a ``package.module:object`` as it is."""
    source, sep, attr = target.partition(":")
    if source.endswith(".py") or "/" in source or Path(source).is_file():
        return str(Path(source).absolute()) + sep + attr
    return target


def server_entry(
    client: str, target: str, *, config: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The client's entry for ``mcplane run TARGET`` (paths made absolute)."""
    command = mcplane_command()
    args = [*command[1:], "run", absolute_target(target)]
    if config is not None:
        args += ["--config", str(Path(config).absolute())]
    entry: dict[str, Any] = {"type": "stdio"} if client == "vscode" else {}
    entry.update(command=command[0], args=args)
    if env:
        entry["env"] = env
    return entry


def _parse_env(items: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--env {item!r}: expected NAME=VALUE")
        env[name.strip()] = value
    return env


def _read_config(path: Path, key: str) -> dict[str, Any]:
    """The client's config as it is (``{}`` if there is none yet); one that cannot be read is an error,
    never overwritten."""
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return {}
    try:
        current: Any = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it, or choose another file: --config-path") from None
    if not isinstance(current, dict) or not isinstance(current.get(key, {}), dict):
        raise ConfigError(f"{path}: expected a JSON object with {key!r} an object; not changing it")
    return current  # pyright: ignore[reportUnknownVariableType]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def install(args: argparse.Namespace) -> int:
    from mcplane.loader import load_plane

    client_name, key = CLIENTS[args.client]
    env = _parse_env(args.env)
    if args.config is not None and not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config}: no such file")
    if args.name is not None and not args.name.strip():
        raise ConfigError("--name must not be empty")
    plane = load_plane(args.target)  # as `mcplane run` will: a broken target is reported now
    name = args.name if args.name is not None else plane.name
    path = Path(args.config_path).expanduser() if args.config_path else default_config_path(args.client)
    current = _read_config(path, key)
    servers: dict[str, Any] = dict(current.get(key) or {})
    action = "updated" if name in servers else "added"
    servers[name] = server_entry(args.client, args.target, config=args.config, env=env)
    text = json.dumps({**current, key: servers}, indent=2) + "\n"
    if args.dry_run:
        sys.stdout.write(text)
        print(f"(dry run: {path} not written)", file=sys.stderr)
        return 0
    _write_atomically(path, text)
    print(f"{action} {name!r} in {path}; restart {client_name} (or reload its MCP servers) to start it")
    return 0
