"""A loopback HTTP forward proxy that stands for one more "IP" in front of the fake LIHKG server.

Everything on loopback comes from 127.0.0.1, so each proxy tags the requests it forwards with
`X-Fake-Client-IP: <identity>`; the fake server's per-IP limiter keys on that header. Plain
HTTP only (absolute-form request lines, as httpx sends through an `http://` proxy), no CONNECT.

    with FakeLihkgServer() as server, TaggingProxy("proxy-a") as proxy:
        ... LihkgClient(server.base_url, proxy=proxy.url) ...
        assert proxy.forwarded == 1
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.lihkg_ip_limit import CLIENT_IP_HEADER
from tests.fakes.loopback import LoopbackServer

# Headers that belong to one hop, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
}


class TaggingProxy(LoopbackServer):
    """One forward proxy on an ephemeral loopback port; `url` is what a client's proxy setting takes."""

    def __init__(self, identity: str, *, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.identity = identity
        self.host = host
        self.timeout = timeout
        self.forwarded = 0
        self.refuse = False  # True: answer 502 as a dead proxy would
        self._lock = threading.Lock()

    def _make_server(self) -> ThreadingHTTPServer:
        httpd = _ProxyServer((self.host, 0), _ProxyHandler)
        httpd.proxy = self
        return httpd

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _count(self) -> None:
        with self._lock:
            self.forwarded += 1


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: TaggingProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-answer are expected (timeouts, killed scrapers)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        proxy = self.server.proxy
        target = urlsplit(self.path)
        if proxy.refuse or target.scheme != "http" or not target.hostname:
            self._answer(502, b"bad gateway", [("Content-Type", "text/plain")])
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers[CLIENT_IP_HEADER] = proxy.identity
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=proxy.timeout)
        try:
            upstream.request("GET", path, headers=headers)
            reply = upstream.getresponse()
            body = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
            status = reply.status
        except OSError:
            self._answer(502, b"upstream unreachable", [("Content-Type", "text/plain")])
            return
        finally:
            upstream.close()
        proxy._count()
        self._answer(status, body, kept)

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
