"""Hostile input at every authorization-server endpoint, over real HTTP against ``mcplane run``:
each is answered with the RFC's error code (a JSON body with ``Cache-Control: no-store`` from
the token, revocation and registration endpoints; an error page or a redirect to a verified
redirect URI from the browser endpoints), never a stack trace, never a crash."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import pytest

from tests.oauth.conftest import pkce_pair
from tests.oauth.server.conftest import Browser, Plant, consent_form, query_of

REDIRECT_URI = "http://127.0.0.1:9/callback"
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _authorize_url(base: str, client_id: str, challenge: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "tools.read",
        **extra,
    }
    return f"{base}/oauth/authorize?{urlencode(query)}"


@pytest.fixture(scope="module")
def client_id(authorization_server: Plant) -> str:
    body = {"redirect_uris": [REDIRECT_URI], "client_name": "hostile", "token_endpoint_auth_method": "none"}
    answer = httpx.post(f"{authorization_server.server.base}/oauth/register", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


def _assert_json_error(answer: httpx.Response, status: int, error: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str)


FORM = {"content-type": "application/x-www-form-urlencoded"}


def _basic(value: bytes) -> dict[str, str]:
    return {"authorization": "Basic " + value.decode("latin-1")}  # sent as latin-1 bytes


# (endpoint, raw body, headers, status, error)
REQUESTS: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("token", b"grant_type=refresh_token&refresh_token=" + b"x" * 20_000, FORM, 413, "invalid_request"),
    ("revoke", b"token=" + b"x" * 20_000, FORM, 413, "invalid_request"),
    (
        "token",
        b'{"grant_type": "refresh_token", "client_id": "@C"}',
        {"content-type": "application/json"},
        400,
        "invalid_request",
    ),
    ("revoke", b'{"token": "x", "client_id": "@C"}', {"content-type": "application/json"}, 400, "invalid_request"),
    ("token", b"grant_type=refresh_token&grant_type=authorization_code&client_id=@C", FORM, 400, "invalid_request"),
    ("revoke", b"token=a&token=b&client_id=@C", FORM, 400, "invalid_request"),
    ("token", b"grant_type=\xff\xfe%ff%fe&client_id=@C", FORM, 400, "unsupported_grant_type"),
    ("token", b"grant_type=%zz%%&client_id=@C&%%%=%", FORM, 400, "unsupported_grant_type"),
    ("token", b"client_id=@C&refresh_token=x", FORM, 400, "invalid_request"),  # grant_type missing
    ("token", b"grant_type=password&client_id=@C&username=a&password=b", FORM, 400, "unsupported_grant_type"),
    (
        "token",
        b"grant_type=refresh_token&client_id=@C&refresh_token=x&scope=" + b"a+" * 1500,
        FORM,
        400,
        "invalid_request",
    ),
    ("token", b"grant_type=refresh_token&refresh_token=x", {**FORM, **_basic(b"!!!")}, 401, "invalid_client"),
    ("token", b"grant_type=refresh_token&refresh_token=x", {**FORM, **_basic(b"\xe9\xe9")}, 401, "invalid_client"),
    ("revoke", b"token=x", {**FORM, **_basic(b"\xff")}, 401, "invalid_client"),
    ("token", b"grant_type=refresh_token", {**FORM, "authorization": "Bearer abc"}, 401, "invalid_client"),
    ("token", b"grant_type=refresh_token", {**FORM, **_basic(base64.b64encode(b"\xff\xfe:x"))}, 401, "invalid_client"),
    (
        "token",
        b"grant_type=refresh_token&refresh_token=x&client_secret=s",
        {**FORM, **_basic(base64.b64encode(b"@C:s"))},
        400,
        "invalid_request",
    ),
    ("revoke", b"client_id=@C", FORM, 400, "invalid_request"),  # no token
]


@pytest.mark.parametrize(("endpoint", "body", "headers", "status", "error"), REQUESTS)
async def test_malformed_token_and_revocation_requests(
    authorization_server: Plant,
    client_id: str,
    endpoint: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    base = authorization_server.server.base
    body = body.replace(b"@C", client_id.encode())
    headers = {name: value.replace("@C", client_id) for name, value in headers.items()}
    if "authorization" in headers and "@C" not in headers["authorization"]:
        encoded = headers["authorization"].removeprefix("Basic ")
        try:
            plain = base64.b64decode(encoded, validate=True)
        except ValueError:
            plain = b""
        if b"@C" in plain:
            headers["authorization"] = "Basic " + base64.b64encode(plain.replace(b"@C", client_id.encode())).decode()
    raw = {name: value.encode("latin-1") for name, value in headers.items()}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{base}/oauth/{endpoint}", content=body, headers=raw)
    _assert_json_error(answer, status, error)


@pytest.mark.parametrize("endpoint", ["token", "revoke", "register", "consent"])
async def test_get_on_a_post_only_endpoint_is_405_with_allow(authorization_server: Plant, endpoint: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{authorization_server.server.base}/oauth/{endpoint}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/oauth/jwks"])
async def test_metadata_and_keys_under_head_options_and_post(authorization_server: Plant, path: str) -> None:
    url = authorization_server.server.base + path
    async with httpx.AsyncClient(timeout=10) as http:
        got = await http.get(url)
        head = await http.head(url)
        options = await http.options(url)
        posted = await http.post(url, content=b"x" * 100_000)
    assert got.status_code == 200
    assert got.json()
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert options.status_code == 204
    assert options.headers["access-control-allow-origin"] == "*"
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"


def _nested(depth: int) -> bytes:
    return b'{"redirect_uris": ["' + REDIRECT_URI.encode() + b'"], "x": ' + b"[" * depth + b"]" * depth + b"}"


REGISTRATIONS: list[tuple[bytes, int, str]] = [
    (b'{"redirect_uris": ["' + REDIRECT_URI.encode() + b'"], "x": "' + b"a" * 20_000 + b'"}', 413, "invalid_request"),
    (_nested(5000), 400, "invalid_client_metadata"),
    (b"[1, 2]", 400, "invalid_client_metadata"),
    (b"\xff\xfe{}", 400, "invalid_client_metadata"),
    (
        json.dumps({"redirect_uris": [f"https://a.example/{n}" for n in range(100)]}).encode(),
        400,
        "invalid_redirect_uri",
    ),
    (json.dumps({"redirect_uris": ["http://a.example/cb"]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": ["javascript:alert(1)//x.y"]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": ["data:text/html,<script>x</script>"]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": ["https://a.example/cb#frag"]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": ["https://a.example/cb\r\nx: y"]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": [["nested"]]}).encode(), 400, "invalid_redirect_uri"),
    (json.dumps({"redirect_uris": [REDIRECT_URI], "grant_types": [{}]}).encode(), 400, "invalid_client_metadata"),
    (json.dumps({"redirect_uris": [REDIRECT_URI], "grant_types": [["x"]]}).encode(), 400, "invalid_client_metadata"),
    (
        json.dumps({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": {}}).encode(),
        400,
        "invalid_client_metadata",
    ),
    (
        json.dumps({"redirect_uris": [REDIRECT_URI], "client_name": "\u202e evil"}).encode(),
        400,
        "invalid_client_metadata",
    ),
]


@pytest.mark.parametrize(("body", "status", "error"), REGISTRATIONS)
async def test_hostile_registrations(authorization_server: Plant, body: bytes, status: int, error: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{authorization_server.server.base}/oauth/register",
            content=body,
            headers={"content-type": "application/json"},
        )
    _assert_json_error(answer, status, error)


async def test_loopback_http_redirects_are_allowed_and_unknown_fields_dropped(authorization_server: Plant) -> None:
    """RFC 8252 §7.3 and the MCP authorization spec: http only on a loopback host (any port)."""
    body = {
        "redirect_uris": [
            "http://127.0.0.1:51234/cb",
            "http://localhost/cb",
            "http://[::1]:8/cb",
            "com.example.app:/cb",
        ],
        "token_endpoint_auth_method": "none",
        "software_statement": "x" * 100,
        "jwks": {"keys": []},
    }
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{authorization_server.server.base}/oauth/register", json=body)
    assert answer.status_code == 201, answer.text
    assert "software_statement" not in answer.json()
    assert "jwks" not in answer.json()


async def test_hostile_authorization_requests(authorization_server: Plant, client_id: str) -> None:
    base = authorization_server.server.base
    _, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        # A huge query string: refused before any work, never a crash.
        huge = await http.get(_authorize_url(base, client_id, challenge, state="s" * 60_000))
        assert 400 <= huge.status_code < 500
        many = await http.get(f"{base}/oauth/authorize?" + "&".join(f"p{n}=v" for n in range(7_000)))
        assert 400 <= many.status_code < 500
        # Repeated parameters: an error page, never a redirect.
        repeated = await http.get(_authorize_url(base, client_id, challenge) + f"&client_id={client_id}")
        assert repeated.status_code == 400
        assert "repeated" in repeated.text
        twice = await http.get(_authorize_url(base, client_id, challenge) + "&redirect_uri=https%3A%2F%2Fevil.example")
        assert twice.status_code == 400
        assert "location" not in twice.headers
        # A verified redirect URI: the error is redirected to it.
        for extra, error in [
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"response_type": "code id_token"}, "unsupported_response_type"),
            ({"code_challenge": challenge + "\n"}, "invalid_request"),
            ({"code_challenge": challenge[:-1] + "="}, "invalid_request"),
            ({"code_challenge_method": "plain"}, "invalid_request"),
            ({"scope": "tools.read " + "x" * 100}, "invalid_scope"),
            ({"scope": " ".join(f"s{n}" for n in range(300))}, "invalid_scope"),  # too many
            ({"resource": base.upper() + "/mcp"}, "invalid_target"),
            ({"resource": f"{base}/mcp/"}, "invalid_target"),
            ({"resource": f"{base}/MCP"}, "invalid_target"),
        ]:
            answer = await http.get(_authorize_url(base, client_id, challenge, **extra))
            assert answer.status_code == 303, (extra, answer.status_code, answer.text[:300])
            back = query_of(answer.headers["location"])
            assert back["error"] == error, (extra, back)
            assert back["iss"] == authorization_server.server.issuer
        too_long = await http.get(_authorize_url(base, client_id, challenge, scope="x" * 3000))
        assert too_long.status_code == 400  # a page: the parameters were refused before the client was known
        assert "too long" in too_long.text
        garbage = await http.get(f"{base}/oauth/authorize?client_id=%ff%fe%zz&redirect_uri=%00")
        assert garbage.status_code == 400


async def test_consent_and_callback_refuse_garbled_stale_and_foreign_answers(
    authorization_server: Plant, client_id: str
) -> None:
    plant = authorization_server
    base = plant.server.base
    _, challenge = pkce_pair()
    browser = Browser(plant.idp)
    try:
        for csrf in (None, "", "\u00e9" * 10, "x" * 5000, "a\x00b"):
            page = await browser.consent_page(_authorize_url(base, client_id, challenge))
            assert page.status_code == 200
            action, fields = consent_form(page.text)
            form = {**fields, "decision": "allow"}
            if csrf is None:
                del form["csrf"]
            else:
                form["csrf"] = csrf
            answer = await browser.http.post(urljoin(base, action), data=form)
            assert answer.status_code == 400, (csrf, answer.status_code, answer.text[:300])
            assert "text/html" in answer.headers["content-type"]
        # Never issued, garbled, and a repeated parameter.
        for query in ("state=never-issued&code=x", "state=%ff%fe&code=%zz", "state=a&state=b"):
            answer = await browser.http.get(f"{base}/oauth/callback?{query}")
            assert answer.status_code == 400, (query, answer.text[:300])
        # Another browser's callback, then the same one already used.
        page = await browser.consent_page(_authorize_url(base, client_id, challenge))
        action, fields = consent_form(page.text)
        consent = await browser.http.post(urljoin(base, action), data={**fields, "decision": "allow"})
        assert consent.status_code == 303
        callback = await plant.idp.login(consent.headers["location"])
        async with httpx.AsyncClient(timeout=10, cookies={"mcplane_oauth": "someone-else"}) as stranger:
            foreign = await stranger.get(callback)
        assert foreign.status_code == 400
        replay = await browser.http.get(callback)  # the stranger's attempt used it up
        assert replay.status_code == 400
    finally:
        await browser.aclose()


async def test_a_verifier_outside_rfc_7636_is_refused_even_when_it_matches(
    authorization_server: Plant, client_id: str
) -> None:
    """A verifier with a trailing newline (or any character outside the unreserved set) matches
    its own challenge, but RFC 7636 §4.1 allows only 43-128 unreserved characters."""
    plant = authorization_server
    for verifier in (secrets.token_urlsafe(48) + "\n", "a" * 42, "a" * 129, "a" * 43 + "+", "é" * 43):
        browser = Browser(plant.idp)
        try:
            final = await browser.authorize(_authorize_url(plant.server.base, client_id, _s256(verifier)))
        finally:
            await browser.aclose()
        code = query_of(final)["code"]
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{plant.server.base}/oauth/token", data=form)
        _assert_json_error(answer, 400, "invalid_grant")
        assert code not in plant.server.stderr()


# ------------------------------------------------------------------------ client ID metadata documents
class _Documents(BaseHTTPRequestHandler):
    """Canned answers by path; ``/slow.json`` drips one byte and then waits for the test's end."""

    base = ""
    release = threading.Event()

    def do_GET(self) -> None:
        url = f"{self.base}{self.path}"
        good = {"client_id": url, "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        answers: dict[str, tuple[int, str, bytes]] = {
            "/deep.json": (200, "application/json", b"[" * 1900 + b"]" * 1900),
            "/invalid.json": (200, "application/json", b'{"client_id": '),
            "/latin1.json": (200, "application/json", b'{"client_id": "\xff\xfe"}'),
            "/page.json": (200, "text/html", json.dumps(good).encode()),
            "/other.json": (200, "application/json", json.dumps({**good, "client_id": url + "x"}).encode()),
            "/secret.json": (200, "application/json", json.dumps({**good, "client_secret": "s"}).encode()),
            "/uris.json": (200, "application/json", json.dumps({**good, "redirect_uris": [{"a": 1}]}).encode()),
            "/gone.json": (404, "application/json", b"{}"),
        }
        if self.path == "/redirect.json":
            self.send_response(302)
            self.send_header("location", f"{self.base}/good.json")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if self.path == "/slow.json":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "100")
            self.end_headers()
            self.wfile.write(b"{")
            self.wfile.flush()
            self.release.wait(30)
            return
        if self.path == "/huge.json":  # chunked, no length: the cap applies while reading
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk = b" " * 16_384
            try:
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        status, media, body = answers.get(self.path, (200, "application/json", json.dumps(good).encode()))
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def documents() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Documents)
    httpd.daemon_threads = True
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    _Documents.base = base
    _Documents.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        _Documents.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/deep.json", "not JSON"),
        ("/invalid.json", "not JSON"),
        ("/latin1.json", "not JSON"),
        ("/page.json", "not_json"),
        ("/other.json", "another client_id"),
        ("/secret.json", "public"),
        ("/uris.json", "redirect URI"),
        ("/gone.json", "not_found"),
        ("/redirect.json", "bad_status"),
        ("/huge.json", "too_large"),
        ("/slow.json", "timeout"),
        ("#/good.json", "no fragment"),
        ("/good.json#x", "no fragment"),
        ("@user:pw/good.json", "no fragment"),
        ("/./good.json", "no fragment"),
        ("", "no fragment"),
    ],
)
async def test_hostile_client_id_metadata_documents(
    authorization_server: Plant, documents: str, path: str, reason: str
) -> None:
    if path.startswith("@"):
        client_id = documents.replace("http://", "http://" + path[1:].split("/", 1)[0] + "@") + "/good.json"
    else:
        client_id = documents + path
    _, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(_authorize_url(authorization_server.server.base, client_id, challenge))
    assert page.status_code == 400, page.text[:300]
    assert "invalid_client" in page.text, page.text[:600]
    assert reason in page.text, page.text[:600]
    assert "location" not in page.headers


async def test_a_good_document_on_a_non_default_port_is_accepted(authorization_server: Plant, documents: str) -> None:
    _, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(_authorize_url(authorization_server.server.base, documents + "/good.json", challenge))
    assert page.status_code == 200, page.text[:300]


async def test_no_secret_or_token_reaches_the_log(authorization_server: Plant) -> None:
    """A confidential client's secret (right and wrong), the codes, tokens and garbage sent to the
    token and revocation endpoints: none is in the server's log."""
    base = authorization_server.server.base
    body = {"redirect_uris": [REDIRECT_URI], "client_name": "confidential"}
    wrong_secret = "wrong-" + secrets.token_urlsafe(24)
    garbage = "eyJhbGciOiJFUzI1NiJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(40)
    code = secrets.token_urlsafe(32)
    async with httpx.AsyncClient(timeout=10) as http:
        registered = (await http.post(f"{base}/oauth/register", json=body)).json()
        client, secret = registered["client_id"], registered["client_secret"]
        for used in (wrong_secret, secret):
            answer = await http.post(
                f"{base}/oauth/token",
                data={"grant_type": "authorization_code", "code": code, "code_verifier": "v" * 43},
                auth=(client, used),
            )
            assert answer.status_code in (400, 401)
        revoked = await http.post(f"{base}/oauth/revoke", data={"token": garbage}, auth=(client, secret))
        assert revoked.status_code == 200
    log = authorization_server.server.stderr()
    for value in (secret, wrong_secret, garbage, code, "v" * 43):
        assert value not in log


def test_nothing_logged_a_stack_trace(authorization_server: Plant) -> None:
    """Runs last in this module: every request above left at most a one-line log record."""
    log: Any = authorization_server.server.stderr()
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:4000]
