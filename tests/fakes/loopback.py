"""The lifecycle every thread-served fake shares: an HTTP server on an ephemeral loopback port,
served from a daemon thread, started and stopped by `with`."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """Subclasses build their server in `_make_server` and may wake waiting handlers in `_before_stop`."""

    host = "127.0.0.1"
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def _before_stop(self) -> None:
        """Called before shutdown (e.g. to wake handlers waiting on a condition)."""

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._httpd = self._make_server()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._before_stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._httpd.server_address[1]
