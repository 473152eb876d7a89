"""Safe by default (fext/ui/access.py): the app listens on loopback unless told otherwise; opened
to a network, every route and the websocket refuse a request without the key; the Collection page
opens only folders under its roots, symlinks resolved; the page fetches nothing from outside this
machine. The servers are `streamlit run app.py`, as a user starts them, on tests/app_fixtures.py's
tiny trained workspace."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import streamlit
from starlette.routing import Mount, WebSocketRoute
from streamlit.testing.v1 import AppTest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fext.ui import access, server
from tests.app_fixtures import REPO, app_workspace, streamlit_run
from tests.test_app import button
from tests.test_browser import CHROMIUM, FLAGS, settle

KEY = "k3y-for-the-tests_" + "x" * 30
BAD_KEYS = {"wrong": "not-the-key", "empty": "", "last character": KEY[:-1] + "y"}
ST_STATIC = Path(streamlit.__file__).parent / "static"


@pytest.fixture(scope="session")
def app_ws(tmp_path_factory):
    return app_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def loopback_app(app_ws, tmp_path_factory):
    """Started as the README says: no address given, so the repository's config decides."""
    with streamlit_run(app_ws, tmp_path_factory.mktemp("loopback") / "log.txt") as served:
        yield served


@pytest.fixture(scope="module")
def network_app(app_ws, tmp_path_factory):
    """Opened to the network (every interface) with FEXT_TOKEN set; reached over 127.0.0.1."""
    log = tmp_path_factory.mktemp("network") / "log.txt"
    with streamlit_run(app_ws, log, "--server.address", "0.0.0.0", key=KEY) as (url, _):
        yield url, log


# -- listening address ----------------------------------------------------------------------
def listening(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the sockets listening on `port`, from Linux's /proc/net tables."""
    found = []
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            host, _, hexport = fields[1].partition(":")
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(host)  # 32-bit words in the machine's byte order
                if sys.byteorder == "little":
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(ipaddress.ip_address(raw))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net")
def test_the_app_listens_on_loopback_only_by_default(loopback_app):
    url, port = loopback_app
    addresses = listening(port)
    assert addresses and all(a.is_loopback for a in addresses), addresses
    # on loopback no key is asked for: pages and routes answer as they are
    assert httpx.get(f"{url}/").status_code == 200
    assert httpx.get(f"{url}{server.PREFIX}/static/plotly.min.js").status_code == 200
    with connect(f"ws://127.0.0.1:{port}/_stcore/stream") as ws:
        assert ws.response.status_code == 101


def test_make_app_listens_on_loopback_unless_host_is_given():
    def command(*args: str) -> str:
        out = subprocess.run(["make", "-n", "app", *args], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        return next(line for line in out.splitlines() if "streamlit run app.py" in line)

    assert "--server.address 127.0.0.1" in command()
    assert "--server.address 0.0.0.0" in command("HOST=0.0.0.0")


# -- network mode: every route needs the key -------------------------------------------------
def client(url: str) -> httpx.Client:
    """A new connection per request: Streamlit's own listening socket lacks TCP_NODELAY, so a
    reused connection waits ~40 ms for each response (Nagle against delayed ACKs)."""
    return httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0))


def every_request(ws) -> list[tuple[str, str]]:
    """(method, path) for every HTTP route of the app, Streamlit's and FEXT's, with plausible
    path parameters: the demo model's real extraction, image 0, a media file, a session."""
    from unittest.mock import MagicMock

    from streamlit.web.server.starlette.starlette_app import create_streamlit_routes

    from fext.artifacts import Artifacts
    from fext.atlas import map_key
    from fext.ui.served import Served

    version = ws.current_index("demo")
    values = {"name": "demo", "version": version.name, "by": "label", "id": 0,
              "kind": "isolation", "file_id": "0123456789abcdef.png", "session_id": "a-session",
              "path": "some-component/index.html", "block": 0,
              "map": map_key(Served(Artifacts.at("demo", version)).coords())}
    assets = sorted((ST_STATIC / "static" / "js").iterdir())[:1]
    static = ["/", "/index.html", "/favicon.png", "/manifest.json", "/no-such-file",
              *(f"/static/js/{p.name}" for p in assets)]
    found = []
    for route in [*server.ROUTES, *create_streamlit_routes(MagicMock())]:
        if isinstance(route, WebSocketRoute):
            continue
        if isinstance(route, Mount):  # the frontend's static files
            found += [(m, p) for p in static for m in ("GET", "HEAD")]
            continue
        found += [(m, route.path_format.format(**values)) for m in sorted(route.methods)]
    return found


def test_every_route_refuses_a_request_without_the_key(network_app, app_ws):
    url, _ = network_app
    requests = every_request(app_ws)
    assert len(requests) > 40 and any(p.startswith("/media/") for _, p in requests)
    with client(url) as http:
        for method, path in requests:
            if path == "/_stcore/health":  # open: see the next tests
                continue
            r = http.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.text == ("" if method == "HEAD" else access.REFUSAL), (method, path)
            assert "set-cookie" not in r.headers
            for name, bad in BAD_KEYS.items():
                for how in ({"params": {"token": bad}}, {"headers": {"cookie": f"fext_token={bad}"}},
                            {"headers": {"authorization": f"Bearer {bad}".strip()}}):
                    assert http.request(method, path, **how).status_code == 401, (name, how, path)


def test_every_route_serves_a_request_with_the_key(network_app, app_ws):
    url, _ = network_app
    served = {}
    with client(url) as http:
        for method, path in every_request(app_ws):
            for how in ({"params": {"token": KEY}}, {"headers": {"cookie": f"fext_token={KEY}"}},
                        {"headers": {"authorization": f"Bearer {KEY}"}}):
                r = http.request(method, path, **how)
                http.cookies.clear()  # each request carries its key one way only
                assert r.status_code != 401, (method, path, how)
                served[method, path] = r.status_code
    # the pages and FEXT's routes did serve their data, not an error
    assert served["GET", "/"] == 200 and served["GET", "/_stcore/host-config"] == 200
    fext = [k for k in served if k[1].startswith(server.PREFIX) and k[0] == "GET"]
    assert len(fext) == len(server.ROUTES) and all(served[k] == 200 for k in fext), served


def test_a_key_in_the_url_sets_a_session_cookie_and_leaves_the_address(network_app):
    url, _ = network_app
    with client(url) as http:
        r = http.get("/map", params={"token": KEY, "x": "1"}, headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/map?x=1"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"fext_token={KEY};")
        assert all(a in cookie for a in ("HttpOnly", "SameSite=Strict", "Path=/"))
        assert http.get(r.headers["location"]).status_code == 200  # the cookie alone now
        api = http.get(f"{server.PREFIX}/static/plotly.min.js", params={"token": KEY})
        assert api.status_code == 200 and "fext_token" in api.headers["set-cookie"]


def test_health_answers_ok_without_the_key_and_nothing_more(network_app):
    url, _ = network_app
    r = httpx.get(f"{url}/_stcore/health")
    assert (r.status_code, r.text) == (200, "ok") and "set-cookie" not in r.headers


def test_the_websocket_needs_the_key(network_app):
    url, _ = network_app
    stream = url.replace("http://", "ws://") + "/_stcore/stream"
    refused = [{}, *({"additional_headers": {"cookie": f"fext_token={k}"}} for k in BAD_KEYS.values()),
               *({"additional_headers": {"authorization": f"Bearer {k}".strip()}} for k in BAD_KEYS.values())]
    for how in refused:
        with pytest.raises(InvalidStatus) as e, connect(stream, **how):
            pass
        assert e.value.response.status_code == 403, how  # closed before accepted
    for bad in BAD_KEYS.values():
        with pytest.raises(InvalidStatus), connect(f"{stream}?token={bad}"):
            pass
    for how in ({"additional_headers": {"cookie": f"fext_token={KEY}"}},
                {"additional_headers": {"authorization": f"Bearer {KEY}"}}):
        with connect(stream, **how) as ws:
            assert ws.response.status_code == 101
    with connect(f"{stream}?token={KEY}") as ws:
        assert ws.response.status_code == 101


def test_a_key_from_the_environment_stays_out_of_the_terminal(network_app):
    _, log = network_app
    text = log.read_text()
    assert "?token=<FEXT_TOKEN>" in text and KEY not in text


def test_a_generated_key_is_printed_once_as_the_url_to_open(monkeypatch, capsys):
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    monkeypatch.setattr(access, "networked", lambda: True)
    monkeypatch.setattr(access, "_announced", False)
    monkeypatch.delenv(access.ENV_KEY, raising=False)
    access.key.cache_clear()
    try:
        app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("data"))],
                        middleware=[Middleware(access.RequireKey)])
        with TestClient(app) as client:  # its lifespan is the server's start
            printed = capsys.readouterr().out
            found = re.search(r"http://\S+:\d+/\?token=(\S+)", printed)
            assert found and len(found.group(1)) >= 43, printed  # 32 random bytes
            assert client.get("/").status_code == 401
            assert client.get("/", params={"token": found.group(1)}).text == "data"
        with TestClient(app):
            assert "token=" not in capsys.readouterr().out  # once per process
    finally:
        access.key.cache_clear()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_page_requests_nothing_from_outside_this_machine(network_app):
    from playwright.sync_api import sync_playwright

    url, _ = network_app
    asked = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("request", lambda r: asked.append(r.url))
        page.on("websocket", lambda ws: asked.append(ws.url))
        for path in ("", "map"):
            with page.expect_request(lambda r: "/media/" in r.url, timeout=90_000):  # favicon
                page.goto(f"{url}/{path}?token={KEY}")  # as the printed URL is opened
            settle(page)
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("h1").first.inner_text().startswith(path.capitalize() or "Coll")
        icon = page.evaluate("() => document.querySelector(\"link[rel*='icon']\").href")
        browser.close()
    assert urlsplit(icon).netloc == urlsplit(url).netloc, icon
    outside = [u for u in asked if urlsplit(u).scheme in ("http", "https", "ws", "wss")
               and urlsplit(u).hostname != "127.0.0.1"]
    assert not outside and any("/_stcore/stream" in u for u in asked), outside


# -- folder roots -----------------------------------------------------------------------------
@pytest.fixture
def ws_tree(tmp_path, monkeypatch):
    """A workspace with a folder of its own, one outside it, and a symlink from one to the other."""
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "data" / "mine").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    (root / "data" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "ws-sibling").mkdir()
    monkeypatch.setenv("FEXT_WORKSPACE", str(root))
    monkeypatch.delenv(access.ENV_ROOTS, raising=False)
    return root, outside


def test_on_a_network_only_the_workspace_and_the_demo_may_be_opened(ws_tree, monkeypatch):
    from fext.demo import DEMO_DIR

    root, outside = ws_tree
    monkeypatch.setattr(access, "networked", lambda: True)
    assert set(access.roots()) == {root.resolve() / d for d in ("data", "models", "index")} | \
        {DEMO_DIR.resolve()}
    for ok in (root / "data" / "mine", root / "data", root / "models" / "x", DEMO_DIR):
        assert access.allowed(ok), ok
    for refused in (outside, outside / "sub", root / "data" / "link", root / "data" / "link" / "sub",
                    root / "data" / ".." / ".." / "outside", root.parent / "ws-sibling", root, "/"):
        assert not access.allowed(refused), refused


def test_fext_roots_replaces_the_default_and_symlinks_out_are_refused(ws_tree, monkeypatch):
    root, outside = ws_tree
    mine = root / "data" / "mine"
    (mine / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(access.ENV_ROOTS, f"{mine}{os.pathsep}{outside / 'sub'}")
    for networked in (True, False):  # a list given is kept on loopback too
        monkeypatch.setattr(access, "networked", lambda n=networked: n)
        assert access.roots() == [mine.resolve(), (outside / "sub").resolve()]
        assert access.allowed(mine) and access.allowed(outside / "sub" / "deeper")
        assert not access.allowed(root / "data") and not access.allowed(outside)
        assert not access.allowed(mine / "escape")


def test_on_loopback_without_fext_roots_any_folder_may_be_opened(ws_tree, monkeypatch):
    _, outside = ws_tree
    monkeypatch.setattr(access, "networked", lambda: False)
    assert access.roots() is None and access.allowed(outside) and access.allowed("/")


def test_the_collection_page_refuses_a_folder_outside_the_roots(app_ws, tmp_path, monkeypatch):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    monkeypatch.setenv("FEXT_WORKSPACE", str(app_ws.root))
    monkeypatch.setenv(access.ENV_ROOTS, str(allowed))
    at = AppTest.from_file(str(REPO / "fext" / "ui" / "collection.py"), default_timeout=120).run()
    at.text_input[0].set_value(str(outside))
    button(at, "Scan this folder").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("outside the folders" in e and str(allowed.resolve()) in e and "FEXT_ROOTS" in e
               for e in errors), errors
    assert str(outside) not in "".join(m.value for m in at.markdown)  # not opened


def test_the_app_never_asks_the_internet_for_its_address(tmp_path, monkeypatch):
    """Streamlit checks a websocket's origin against the machine's public address, fetched from
    checkip.amazonaws.com on every miss; the app settles it as unknown once, offline."""
    import runpy

    import streamlit.net_util

    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path))
    monkeypatch.setattr("fext.jobs.start", lambda *a: None)  # no demo preparation here
    runpy.run_path(str(REPO / "app.py"))
    assert streamlit.net_util.get_external_ip() == ""
