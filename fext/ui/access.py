"""Who may use the app, and which server folders it may open.

On loopback (the default: `.streamlit/config.toml`, `make app`) only this machine can reach the
server, and everything passes. Opened to a network (`make app HOST=0.0.0.0`), anyone who can
reach the port could browse the collection, download its features and run jobs, so every request
must carry the key: the pages, Streamlit's websocket, media, uploads, static files and FEXT's
routes under /fext. Only `/_stcore/health` answers without it, and then with its "ok" alone (no
cookie), so a load balancer can still probe it.

The key is `FEXT_TOKEN`, or one generated at start-up and printed once as a URL to open (like
Jupyter's). It is accepted as `?token=` (answered with a session cookie, and a page is
redirected to its address without the key), as the `fext_token` cookie, or as an
`Authorization: Bearer` header; compared in constant time.

The Collection page opens folders typed by the user: `allowed` keeps them under `roots()`.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse

PARAM = "token"
COOKIE = "fext_token"
ENV_KEY = "FEXT_TOKEN"
ENV_ROOTS = "FEXT_ROOTS"
OPEN_METHODS = ("GET", "HEAD", "OPTIONS")  # of the health check, the one route without the key
REFUSAL = (
    "This FEXT server is open to the network and needs its key.\n"
    "Open the URL printed in the terminal where the app was started (it ends in ?token=...),\n"
    f"or, if the key was set with {ENV_KEY}, add ?token=<that key> to this address.\n"
)
_announced = False


# -- where the server listens ----------------------------------------------------------------
def address() -> str:
    """The address Streamlit binds (its own default, when unset, is every interface)."""
    from streamlit import config
    return str(config.get_option("server.address") or "")


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def networked() -> bool:
    """Whether other machines can reach the server: anything but an explicit loopback address."""
    return not is_loopback(address())


@functools.cache
def key() -> str:
    """FEXT_TOKEN, or a fresh one for this process (printed by `announce`)."""
    return os.environ.get(ENV_KEY) or secrets.token_urlsafe(32)


def login_url(show_key: bool = True) -> str:
    """The address to open from another machine, key included."""
    from streamlit import config, net_util
    host = address()
    if host in ("", "0.0.0.0", "::"):
        host = net_util.get_internal_ip() or "localhost"  # a UDP "connect": nothing is sent
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.get_option("server.sslCertFile") else "http"
    base = str(config.get_option("server.baseUrlPath") or "").strip("/")
    path = f"/{base}/" if base else "/"
    token = key() if show_key else f"<{ENV_KEY}>"
    return f"{scheme}://{host}:{config.get_option('server.port')}{path}?{PARAM}={token}"


def announce() -> None:
    """Print the URL to open, once per process; a key from FEXT_TOKEN stays out of the log."""
    global _announced
    if _announced:
        return
    _announced = True
    from_env = bool(os.environ.get(ENV_KEY))
    print(f"\n  FEXT is open to the network; every request needs its key. Open:\n"
          f"  {login_url(show_key=not from_env)}\n", flush=True)


# -- the key in a request --------------------------------------------------------------------
def holds(given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), key().encode())


def offered(conn: HTTPConnection) -> list[str]:
    """Every key a request offers: URL, cookie, bearer header."""
    auth = conn.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return [*conn.query_params.getlist(PARAM), unquote(conn.cookies.get(COOKIE, "")), bearer]


def is_health(conn: HTTPConnection) -> bool:
    from streamlit import config
    from streamlit.url_util import make_url_path
    path = make_url_path(str(config.get_option("server.baseUrlPath") or ""), "_stcore/health")
    return conn.scope["type"] == "http" and conn.scope["method"] in OPEN_METHODS \
        and conn.url.path.rstrip("/") == "/" + path.strip("/")


def session_cookie() -> str:
    return f"{COOKIE}={quote(key(), safe='')}; HttpOnly; SameSite=Strict; Path=/"


def without_key(conn: HTTPConnection) -> str:
    """The request's own address with the key taken out of its query."""
    rest = [(k, v) for k, v in conn.query_params.multi_items() if k != PARAM]
    return conn.url.path + (f"?{urlencode(rest)}" if rest else "")


def is_page(conn: HTTPConnection) -> bool:
    return conn.scope["type"] == "http" and conn.scope["method"] == "GET" \
        and "text/html" in conn.headers.get("accept", "")


class RequireKey:
    """Pure ASGI middleware (http and websocket; lifespan passes through, printing the URL to
    open): in network mode, a request without the key gets 401 and no data."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket") or not networked():
            if kind == "lifespan" and networked():
                announce()
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        if not any(holds(k) for k in offered(conn)):
            if is_health(conn):
                return await self.app(scope, receive, _drop_cookies(send))
            announce()  # in case no lifespan came (an app mounted elsewhere)
            return await refuse(scope, receive, send)
        if kind == "http" and any(holds(k) for k in conn.query_params.getlist(PARAM)):
            if is_page(conn):  # the key leaves the address bar and the history
                redirect = RedirectResponse(without_key(conn), status_code=303)
                redirect.headers.append("set-cookie", session_cookie())
                return await redirect(scope, receive, send)
            return await self.app(scope, receive, _add_cookie(send))
        return await self.app(scope, receive, send)


async def refuse(scope, receive, send) -> None:
    """401 with how to get in. A websocket is closed before it is accepted, which uvicorn
    answers with a bare 403 at the handshake (its 401 denial response logs a spurious error)."""
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})  # policy violation
    response = PlainTextResponse(REFUSAL, status_code=401, headers={
        "WWW-Authenticate": 'Bearer realm="FEXT"', "Cache-Control": "no-store"})
    await response(scope, receive, send)


def _add_cookie(send):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).append("set-cookie", session_cookie())
        await send(message)
    return wrapped


def _drop_cookies(send):
    """Health without the key: its status only (Streamlit would set its XSRF cookie)."""
    async def wrapped(message):
        if message["type"] == "http.response.start":
            message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                  if k.lower() != b"set-cookie"]
        await send(message)
    return wrapped


# -- folders the app may open ----------------------------------------------------------------
def roots() -> list[Path] | None:
    """Folders the Collection page may open, symlinks resolved; None: no limit. FEXT_ROOTS
    (os.pathsep-separated) when set; else no limit on loopback, and on a network the
    workspace's own data/, models/ and index/ plus the bundled demo's images."""
    listed = [p for p in os.environ.get(ENV_ROOTS, "").split(os.pathsep) if p.strip()]
    if not listed and not networked():
        return None
    if not listed:
        from fext.demo import DEMO_DIR
        from fext.workspace import Workspace
        root = Workspace().root
        listed = [root / "data", root / "models", root / "index", DEMO_DIR]
    return [Path(p).expanduser().resolve() for p in listed]


def allowed(path: str | Path) -> bool:
    """Whether `path`, once every symlink in it is resolved, lies under one of the roots."""
    limit = roots()
    if limit is None:
        return True
    real = Path(path).expanduser().resolve()
    return any(real == r or r in real.parents for r in limit)
