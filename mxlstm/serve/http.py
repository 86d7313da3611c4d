"""A small HTTP/1.1 client on the standard library for the server's loopback endpoints
(ping, registration, predictions): one keep-alive connection, status and bytes back."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit


class Client:
    """Requests to one ``http://host:port``; reconnects after a dropped connection.

    >>> Client("http://127.0.0.1:1", timeout=0.5).host
    '127.0.0.1'
    """

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | str | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        """``(status, body)`` of one request; OSError / http.client errors propagate."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in (0, 1):  # a keep-alive connection the server closed: retry once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as err:
                self.close()
                if attempt or not isinstance(err, http.client.RemoteDisconnected):
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, payload
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body=None) -> tuple[int, object]:
        """``(status, decoded JSON or the raw text)``; ``body`` is JSON-encoded."""
        status, payload = self.request(method, path,
                                       None if body is None else json.dumps(body))
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
