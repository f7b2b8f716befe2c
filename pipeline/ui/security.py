"""What stands between the campaign and every other web page or user of the computer.

A local port can be reached by any web page the teacher visits (through her browser) and
by any user of the machine. So, as Jupyter does:

- the server listens on 127.0.0.1 only, and a request whose Host header is not the
  loopback address or `localhost` with the server's port is refused (DNS rebinding);
- the address printed at start carries a random secret token; the first request with it
  gets an HttpOnly, SameSite=Strict cookie and is redirected to the same page without the
  token; any request without that cookie is refused (403, a French page);
- every form carries a CSRF token bound to the server's run, checked on each POST, and a
  POST that names another origin is refused (our own pages send `Origin: null`, since
  they set `Referrer-Policy: no-referrer`: the cookie and the CSRF token decide then);
- a request body beyond a size limit is refused (413) while it streams in;
- every response carries security headers (CSP `default-src 'self'`, no framing, no
  referrer, no MIME sniffing, no caching of pages that hold personal data);
- a file is downloaded only from inside the campaign folder (`campaign_file`).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_PARAM = "token"
CSRF_FIELD = "csrf"
MAX_BODY = 1024 * 1024  # a page's form: far more than a teacher types; uploads get their own
BODY_LIMIT = "grille.body_limit"  # the scope key holding the body limit of the request
UPLOAD_MAX = 256 * 1024 * 1024  # a form sending files (multipart): streamed to disk
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
)

REFUSED_TITLE = "Accès refusé"
NO_SESSION = (
    "Cette page ne s'ouvre qu'avec l'adresse affichée par « grille ui » dans le terminal "
    "(elle contient un jeton secret). Copiez-la dans la barre d'adresse de votre navigateur ; "
    "si l'interface a été relancée, prenez la nouvelle adresse."
)
BAD_TOKEN = (
    "Le jeton de cette adresse n'est pas celui de l'interface en cours : l'interface a "
    "peut-être été relancée. Prenez l'adresse affichée par « grille ui » dans le terminal."
)
BAD_HOST = (
    "Adresse refusée : l'interface de grille ne répond qu'à http://127.0.0.1:{port}/ "
    "(ou http://localhost:{port}/). Prenez l'adresse affichée par « grille ui »."
)
BAD_ORIGIN = "Formulaire refusé : il ne vient pas d'une page de l'interface de grille."
BAD_CSRF = (
    "Formulaire refusé : il lui manque le jeton de l'interface en cours (la page a "
    "peut-être été ouverte avant un redémarrage de « grille ui »). Rechargez la page, "
    "puis recommencez. Rien n'a été enregistré."
)
UNEXPECTED = "Erreur inattendue de grille (ce n'est pas de votre fait)."
TOO_LARGE = "Envoi refusé : il dépasse la taille permise ({limit}). Rien n'a été enregistré."


@dataclass(frozen=True)
class Secrets:
    """The secrets of one run of the server, never written anywhere."""

    token: str  # in the address printed at start
    session: str  # the cookie's value
    csrf: str  # in every form

    @classmethod
    def new(cls) -> Secrets:
        return cls(
            token=secrets.token_urlsafe(32),
            session=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
        )


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret given by a client."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def cookie_name(port: int) -> str:
    """One cookie per port: cookies are shared across ports, two interfaces are not."""
    return f"grille_session_{port}"


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host headers the server answers: the loopback address or `localhost`."""
    names = ("127.0.0.1", "localhost", "[::1]")
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts.update(names)
    return frozenset(hosts)


def refusal_page(title: str, message: str) -> bytes:
    """A small French page for a refused request (no stylesheet: it would be refused too)."""
    return (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>{escape(title)} — grille</title></head><body><main>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></main></body></html>"
    ).encode()


class BodyTooLarge(Exception):
    """A request body went beyond the limit while it was read."""


def human_size(size: int) -> str:
    """« 1 Mo », « 200 ko »: a size as the teacher reads it."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} Mo"
    return f"{max(1, size // 1024)} ko"


class Guard:
    """ASGI middleware: host, session (token then cookie), origin, body size, headers."""

    def __init__(
        self,
        app: ASGIApp,
        secrets: Secrets,
        port: int,
        max_body: int = MAX_BODY,
        upload_max: int = UPLOAD_MAX,
    ):
        self.app = app
        self.secrets = secrets
        self.port = port
        self.max_body = max_body
        self.upload_limits: dict[str, int] = {}  # path → its own body limit (uploads)
        self.upload_max = upload_max
        self.hosts = allowed_hosts(port)
        self.origins = frozenset(f"http://{host}" for host in self.hosts)
        self.cookie = cookie_name(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            await send({"type": "websocket.close", "code": 1008})
            return
        send = _with_headers(send, SECURITY_HEADERS)
        headers = _headers(scope)
        if headers.get("host", "") not in self.hosts:
            await _refuse(send, 403, BAD_HOST.format(port=self.port))
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        tokens = [value for name, value in query if name == TOKEN_PARAM]
        if tokens:
            if len(tokens) != 1 or not same(tokens[0], self.secrets.token):
                await _refuse(send, 403, BAD_TOKEN)
                return
            await self._enter(scope, query, send)
            return
        session = cookie_parser(headers.get("cookie", "")).get(self.cookie)
        if not same(session, self.secrets.session):
            await _refuse(send, 403, NO_SESSION)
            return
        if scope["method"] not in ("GET", "HEAD") and headers.get("origin") not in (
            None,
            "null",  # what a browser sends from our own pages, under `no-referrer`
            *self.origins,
        ):
            await _refuse(send, 403, BAD_ORIGIN)
            return
        upload = is_upload(headers.get("content-type", ""))
        limit = self.upload_limits.get(scope["path"]) or (
            self.upload_max if upload else self.max_body
        )
        scope[BODY_LIMIT] = limit  # the view that streams an upload names it when passed
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, TOO_LARGE.format(limit=human_size(limit)))
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _limited(receive, limit), watched_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, 413, TOO_LARGE.format(limit=human_size(limit)))
        except Exception:
            # a bug: the application's handler already answered with a French page and
            # wrote the details in the campaign's journal; no traceback on the terminal
            if not started:
                await _refuse(send, 500, UNEXPECTED)

    async def _enter(self, scope: Scope, query: list[tuple[str, str]], send: Send) -> None:
        """The start address: set the session cookie, go to the same page without the token."""
        rest = urlencode([(name, value) for name, value in query if name != TOKEN_PARAM])
        location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
        cookie = (
            f"{self.cookie}={self.secrets.session}; Path=/; HttpOnly; SameSite=Strict"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode()),
                    (b"set-cookie", cookie),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def is_upload(content_type: str) -> bool:
    """Whether a request sends files (a multipart form): it gets the upload limit."""
    return content_type.lower().startswith("multipart/form-data")


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lower-case names; a repeated header keeps its first value."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _with_headers(send: Send, extra: Iterable[tuple[str, str]]) -> Send:
    """`send` that adds `extra` headers to the response (unless the response set them)."""
    encoded = [(name.encode(), value.encode()) for name, value in extra]

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            message = {
                **message,
                "headers": [
                    *message.get("headers", []),
                    *((n, v) for n, v in encoded if n not in present),
                ],
            }
        await send(message)

    return sender


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that raises `BodyTooLarge` once the body streamed in passes `limit`."""
    received = 0

    async def receiver() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return receiver


async def _refuse(send: Send, status: int, message: str) -> None:
    title = {403: REFUSED_TITLE, 413: "Envoi trop volumineux"}.get(status, "Erreur inattendue")
    body = refusal_page(title, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CsrfRefused(Exception):
    """A POST form without the CSRF token of this run."""


async def checked_form(request: Request, expected: str) -> FormData:
    """The POST form, once its CSRF token is the one of this run (`CsrfRefused` if not)."""
    form = await request.form(max_files=0, max_fields=50)
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not same(given, expected):
        raise CsrfRefused
    return form


# ------------------------------------------------------------------ downloads

DOWNLOADABLE = ("output", "input_templates")  # top folders a file may be taken from
_NEVER = frozenset({"grille.sqlite", "grille.sqlite-wal", "grille.sqlite-shm"})


def campaign_file(root: Path, relative: str) -> Path | None:
    """The file `relative` (a POSIX path inside the campaign folder `root`), if it may be
    downloaded; else None.

    Refused: a path not written plainly (`./`, `//`), an absolute path, `..`, a hidden
    part (the key in `.grille/`, the backups, the lock), anything outside `output/` and
    `input_templates/`, the database, a path through a symbolic link that leads elsewhere
    (checked on the resolved path too), and anything that is not a regular file.
    """
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    asked = PurePosixPath(relative)
    if asked.as_posix() != relative or asked.is_absolute() or not _acceptable(asked.parts):
        return None
    base = root.resolve()
    try:
        resolved = (base / asked).resolve(strict=True)
        inside = resolved.relative_to(base)
    except (OSError, ValueError, RuntimeError):  # absent, a link loop, or outside
        return None
    if not _acceptable(inside.parts) or not resolved.is_file():
        return None
    return resolved


def _acceptable(parts: tuple[str, ...]) -> bool:
    return (
        len(parts) >= 2
        and parts[0] in DOWNLOADABLE
        and not any(part in ("", ".", "..") or part.startswith(".") for part in parts)
        and not (parts[0] == "output" and len(parts) == 2 and parts[1] in _NEVER)
    )
