"""Encryption in transit: TLS contexts for serving and for calling upstreams, mTLS, rotation.

Serving::

    ctx = server_context("server.pem", "server.key", client_ca="clients-ca.pem", crl="clients.crl")
    reloader = CertificateReloader(ctx, "server.pem", "server.key", crl="clients.crl")
    # every so often (or on SIGHUP): reloader.check() -> True when it loaded new files

- TLS 1.2 and 1.3 only; for TLS 1.2 only forward-secret AEAD suites (ECDHE/DHE with AES-GCM or
  ChaCha20-Poly1305); no compression, no renegotiation.
- Certificate, key, CA bundle and CRL are each a file path or the PEM text itself (as a secret
  reference resolves to). PEM text is handed to OpenSSL through an in-memory file
  (``memfd``) where the platform has one, else a private temporary file deleted at once.
- With ``client_ca`` the server asks for a client certificate (mTLS) and refuses a handshake
  without a valid one (``client_cert="optional"`` lets certificate-less clients through);
  with ``crl`` a revoked client certificate is refused too. Expired ones always are.
- :class:`CertificateReloader` loads rotated files into the *same* context: handshakes from then
  on use the new certificate (and the newest CRL: OpenSSL prefers the most recent one of an
  issuer), connections already open go on with what they negotiated. No restart.
- :func:`peer_principal` / :func:`principal_from_certificate` turn a verified client
  certificate into a :class:`~mcplane.Principal` (subject from the CN, else the first SAN).

Calling servers: :func:`client_context` verifies them by default (the system's CAs, or only a
given bundle; optionally a fixed ``server_name``) and may present a client certificate.
Contexts are cached: one per distinct configuration (and version of the files it names), never
one per call. (Serving the verified client certificate to the application: see
:mod:`mcplane.transports.tls_scope`.)
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from mcplane.context import Principal
from mcplane.errors import ConfigError

__all__ = [
    "SERVER_CIPHERS",
    "CertificateReloader",
    "PEMSource",
    "clear_client_contexts",
    "client_context",
    "client_context_cache_info",
    "load_certificate",
    "peer_principal",
    "principal_from_certificate",
    "server_context",
]

logger = logging.getLogger("mcplane.tls")

PEMSource = str | bytes | os.PathLike[str]
"""A file path (``str`` or ``Path``), or the PEM text itself: ``bytes``, or a ``str`` holding a
``-----BEGIN`` line."""

SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"
"""TLS 1.2 suites: forward secrecy and AEAD only. (TLS 1.3 suites are all strong and not affected.)"""

_PEM_MARK = "-----BEGIN"


def _is_pem(source: PEMSource) -> bool:
    return isinstance(source, bytes) or (isinstance(source, str) and _PEM_MARK in source)


def _pem_bytes(source: PEMSource) -> bytes | None:
    """The PEM text of ``source`` (bytes always are), or ``None`` when it is a path."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and _PEM_MARK in source:
        return source.encode()
    return None


@contextmanager
def _as_path(source: PEMSource) -> Generator[str]:
    """A path OpenSSL can read ``source`` from: the file itself, or the PEM text in a private file."""
    data = _pem_bytes(source)
    if data is None:
        yield os.fspath(source)  # pyright: ignore[reportReturnType]
        return
    memfd_create: Callable[[str], int] | None = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("mcplane-tls")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="mcplane-tls-")  # 0700
    path = os.path.join(directory, "material.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield path
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


def _describe(source: PEMSource) -> str:
    return "PEM text" if _is_pem(source) else str(os.fspath(source))


def _read(source: PEMSource) -> bytes:
    data = _pem_bytes(source)
    if data is not None:
        return data
    with open(source, "rb") as file:
        return file.read()


def load_certificate(
    context: ssl.SSLContext, cert: PEMSource, key: PEMSource | None = None, *, password: str | bytes | None = None
) -> None:
    """Load a certificate chain and its key into ``context``, replacing the one it had.

    The material is read once and tried on a scratch context first: OpenSSL replaces the
    certificate before it checks the key, so a bad pair loaded straight into a live context
    would leave it unable to finish a handshake. A bad pair raises and changes nothing.
    """
    where = _describe(cert) if key is None else f"{_describe(cert)} and {_describe(key)}"
    try:
        cert_data = _read(cert)
        key_data = _read(key) if key is not None else None
        for target in (ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), context):
            with _as_path(cert_data) as cert_path:
                if key_data is None:
                    target.load_cert_chain(cert_path, password=password)
                else:
                    with _as_path(key_data) as key_path:
                        target.load_cert_chain(cert_path, key_path, password=password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate from {where}: {_reason(exc)}") from None


def _load_verify(context: ssl.SSLContext, source: PEMSource, what: str) -> None:
    try:
        data = _pem_bytes(source)
        if data is not None and what == "CA bundle":
            context.load_verify_locations(cadata=data.decode())
        else:
            with _as_path(source) as path:
                context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the {what} from {_describe(source)}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def server_context(
    cert: PEMSource,
    key: PEMSource | None = None,
    *,
    password: str | bytes | None = None,
    client_ca: PEMSource | None = None,
    client_cert: Literal["required", "optional"] = "required",
    crl: PEMSource | None = None,
    ciphers: str = SERVER_CIPHERS,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """The ``SSLContext`` a server listens with (give it to uvicorn, ``asyncio.start_server``, ...)."""
    if minimum_version < ssl.TLSVersion.TLSv1_2:
        raise ConfigError("TLS older than 1.2 is not offered")
    if crl is not None and client_ca is None:
        raise ConfigError("a CRL needs client_ca: revocation is checked for client certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum_version
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f"no usable TLS cipher in {ciphers!r}") from None
    load_certificate(context, cert, key, password=password)
    if client_ca is not None:
        _load_verify(context, client_ca, "CA bundle")
        context.verify_mode = ssl.CERT_REQUIRED if client_cert == "required" else ssl.CERT_OPTIONAL
        if crl is not None:
            _load_verify(context, crl, "CRL")
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


# ---------------------------------------------------------------------------------- client side
def _version(source: PEMSource | None) -> tuple[int, int, int] | None:
    """What identifies a file's current content cheaply: inode, size, mtime. ``None`` for PEM text."""
    if source is None or _is_pem(source):
        return None
    try:
        st = os.stat(source)
    except OSError:
        return None  # building the context reports the missing file
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def client_context(
    *,
    ca: PEMSource | None = None,
    cert: PEMSource | None = None,
    key: PEMSource | None = None,
    password: str | bytes | None = None,
    verify: bool = True,
    server_name: str | None = None,
) -> ssl.SSLContext:
    """A context for calling a server over TLS: its certificate verified (hostname included)
    against ``ca`` (that bundle only) or else the system's CAs; ``cert``/``key`` presented when
    the server asks (mTLS).

    ``server_name``: the name to verify and send (SNI) whatever host the URL names, for an
    upstream reached by IP address or through a tunnel. ``verify=False`` checks nothing (the
    channel is encrypted but the server unauthenticated): for local experiments only.

    Cached: the same arguments (and the same versions of the files they name) give the same
    context, so a connection pool shares one; a rotated file gives a new one.
    """
    if key is not None and cert is None:
        raise ConfigError("a client key needs its certificate (cert=)")
    if not verify and (ca is not None or server_name is not None):
        raise ConfigError("ca= and server_name= verify the server: they make no sense with verify=False")
    versions = (_version(ca), _version(cert), _version(key))
    return _cached_client_context(
        _hashable(ca), _hashable(cert), _hashable(key), password, verify, server_name, versions
    )


def _hashable(source: PEMSource | None) -> str | bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return os.fspath(source)


class _NamedContext(ssl.SSLContext):
    """A client context that verifies, and sends as SNI, one fixed server name."""

    server_name: str = ""

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        del server_hostname
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)

    def wrap_socket(  # type: ignore[override]
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        del server_hostname
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.server_name, session
        )


@functools.lru_cache(maxsize=64)
def _cached_client_context(
    ca: str | bytes | None,
    cert: str | bytes | None,
    key: str | bytes | None,
    password: str | bytes | None,
    verify: bool,
    server_name: str | None,
    versions: tuple[Any, ...],
) -> ssl.SSLContext:
    del versions  # part of the cache key only
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT) if server_name else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if isinstance(context, _NamedContext):
        context.server_name = server_name or ""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    if not verify:
        logger.warning("TLS without verifying the server: the connection is encrypted but not authenticated")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca is not None:
        _load_verify(context, ca, "CA bundle")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None:
        load_certificate(context, cert, key, password=password)
    return context


def client_context_cache_info() -> Any:
    """How many client contexts were built (``misses``) and reused (``hits``), ``functools`` style."""
    return _cached_client_context.cache_info()


def clear_client_contexts() -> None:
    """Forget every cached client context (the next :func:`client_context` builds afresh)."""
    _cached_client_context.cache_clear()


# ---------------------------------------------------------------------------------- rotation
class CertificateReloader:
    """Reloads a server context's certificate (and CRL) when their files change, in place.

    :meth:`check` compares each file's inode, size and modification time with what was loaded
    last and, if any changed, loads the new files into the *same* context. A failed load (a
    certificate written before its key, say) keeps the old certificate, logs a warning and is
    tried again at the next check. Call :meth:`check` from a periodic task or a signal handler
    (:meth:`run` is such a task); it blocks only on reading the files.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str] | None = None,
        *,
        password: str | bytes | None = None,
        crl: str | os.PathLike[str] | None = None,
    ) -> None:
        self.context = context
        self.cert = Path(cert)
        self.key = Path(key) if key is not None else None
        self.crl = Path(crl) if crl is not None else None
        self.password = password
        self.reloads = 0
        self._loaded = self._versions()

    def _versions(self) -> tuple[tuple[int, int, int] | None, ...]:
        versions: list[tuple[int, int, int] | None] = []
        for path in (self.cert, self.key, self.crl):
            if path is None:
                versions.append(None)
                continue
            try:
                st = os.stat(path)
            except OSError:
                versions.append((-1, -1, -1))  # missing right now (mid-rotation): not a version to load
                continue
            versions.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(versions)

    def check(self) -> bool:
        """Load the files if they changed since the last load; ``True`` when new ones were loaded."""
        current = self._versions()
        if current == self._loaded:
            return False
        if (-1, -1, -1) in current:
            logger.warning("TLS files are incomplete (one is missing); keeping the current certificate")
            return False
        try:
            if current[:2] != self._loaded[:2]:
                load_certificate(self.context, self.cert, self.key, password=self.password)
            if self.crl is not None and current[2] != self._loaded[2]:
                _load_verify(self.context, self.crl, "CRL")
        except ConfigError as exc:
            logger.warning("TLS reload failed, keeping the current certificate: %s", exc.message)
            return False
        self._loaded = current
        self.reloads += 1
        logger.info("reloaded the TLS certificate from %s", self.cert)
        return True

    async def run(self, interval: float = 30.0, *, sleep: Callable[[float], Awaitable[Any]] = anyio.sleep) -> None:
        """Check every ``interval`` seconds until cancelled (run it in the server's lifespan)."""
        while True:
            await sleep(interval)
            self.check()


# ---------------------------------------------------------------------------------- principal
def principal_from_certificate(der: bytes) -> Principal:
    """The caller a verified client certificate names.

    ``subject`` is the certificate's subject CN, else its first SAN (URI, such as a SPIFFE id,
    then DNS name, then e-mail). ``claims`` keep the details: ``cn``, ``san_uri``, ``san_dns``,
    ``san_email``, ``organization``, ``issuer``, ``serial`` and ``fingerprint_sha256``.
    """
    certificate = x509.load_der_x509_certificate(der)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else None
    organizations = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    san_uri: list[str] = []
    san_dns: list[str] = []
    san_email: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        pass
    else:
        assert isinstance(san, x509.SubjectAlternativeName)
        san_uri = list(san.get_values_for_type(x509.UniformResourceIdentifier))
        san_dns = list(san.get_values_for_type(x509.DNSName))
        san_email = list(san.get_values_for_type(x509.RFC822Name))
    subject = cn or next(iter(san_uri + san_dns + san_email), None)
    if subject is None:
        raise ValueError("the certificate names no subject: neither a CN nor a SAN")
    claims: Mapping[str, Any] = {
        "auth": "mtls",
        "cn": cn,
        "san_uri": san_uri,
        "san_dns": san_dns,
        "san_email": san_email,
        "organization": str(organizations[0].value) if organizations else None,
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "fingerprint_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }
    return Principal(subject=subject, claims=claims)


def peer_principal(connection: ssl.SSLObject | ssl.SSLSocket) -> Principal | None:
    """The principal of a TLS connection's verified client certificate; ``None`` without one.

    For an asyncio transport: ``peer_principal(transport.get_extra_info("ssl_object"))``.
    """
    der = connection.getpeercert(binary_form=True)
    return principal_from_certificate(der) if der else None
