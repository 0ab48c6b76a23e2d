"""mcplane: a bare Plane with one ``echo`` tool, served the way ``mcplane run`` serves it."""

from __future__ import annotations

from _common import announce, bind_free_socket, parse_args

from mcplane import Plane

plane = Plane("bench")


@plane.tool()
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


def main() -> None:
    args = parse_args(("json",))
    if args.transport == "stdio":
        plane.run("stdio")
        return
    from mcplane.transports.serve import serve_http

    sock = bind_free_socket()
    announce(sock)
    options = {"json_response": True} if args.json else {}
    # The same call `mcplane run FILE --transport http` makes (uvloop + httptools, log level warning).
    serve_http(plane, host="127.0.0.1", port=sock.getsockname()[1], sock=sock, **options)


if __name__ == "__main__":
    main()
