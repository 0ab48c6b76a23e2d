"""mcplane: a bare Plane with one ``echo`` tool, served the way ``mcplane run`` serves it.

``--layers auth,authz,ratelimit,audit`` (and ``--fsync``; ``ratelimit-lease`` instead of
``ratelimit`` for the leased allowance) configures pipeline layers on the same Plane with
``plane.configure(PlaneConfig)``, as ``mcplane run app.py --config mcplane.yaml`` would; what
each layer is lives in ``bench/fullpipe.py``.

``--observability off|metrics|logs|all`` configures the ``observability`` section instead and
sets up logging as ``mcplane run`` does (into the run's log directory rather than stderr); what
each setting is lives in ``bench/observe.py``. Without it the process's logging is left alone
(Python's default: warnings only), so the plain ``mcplane`` server writes no call logs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from _common import announce, bind_free_socket, parse_args

from mcplane import Plane

plane = Plane("bench")


@plane.tool()
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


_held: dict[str, anyio.Event] = {}


@plane.tool()
async def hold(key: str) -> str:
    """Wait until ``release(key)`` (at most a minute): a call in flight for ``scaling.py memory``."""
    event = _held.setdefault(key, anyio.Event())
    with anyio.move_on_after(60):
        await event.wait()
    return key


@plane.tool()
async def release(key: str) -> str:
    """End every ``hold(key)`` call."""
    _held.pop(key, anyio.Event()).set()
    return key


def main() -> None:
    args = parse_args(("json",), {"layers": "", "fsync": "interval", "observability": ""})
    if args.layers and args.observability:
        raise SystemExit("--layers and --observability do not combine")
    if args.layers or args.observability:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if args.layers:
        import fullpipe

        layers = fullpipe.parse_layers(args.layers)
        plane.configure(fullpipe.plane_config(layers, fsync=args.fsync))
        fullpipe.install_floor(plane, layers)
    if args.observability:
        import observe

        plane.configure(observe.plane_config(args.observability))
        observe.configure_process_logging(plane.config)
    if args.transport == "stdio":
        plane.run("stdio")
        return
    from mcplane.transports.serve import serve_http

    sock = bind_free_socket()
    announce(sock)
    # The same call `mcplane run FILE [--config mcplane.yaml] --transport http` makes (uvloop + httptools,
    # log level warning, the config's `http:` section).
    options = plane.config.http_options()
    if args.json:
        options["json_response"] = True
    idle = os.environ.get("MCPLANE_BENCH_SESSION_IDLE")
    if idle:  # ``scaling.py memory --park``: drop idle 2025-11-25 sessions after this many seconds
        options["session_idle_timeout"] = float(idle)
    serve_http(plane, host="127.0.0.1", port=sock.getsockname()[1], sock=sock, **options)


if __name__ == "__main__":
    main()
