"""POST alerts to Alertmanager's v2 API (``/api/v2/alerts``), standard library only.

Errors::

    DetectorError
    └── AlertmanagerError               a post did not go through
        ├── AlertmanagerUnavailableError    connection refused, timeout, 5xx, 429, 404:
        │                                   retry later
        └── AlertmanagerRejectedError       400/422: the payload itself is refused;
                                            retrying the same payload cannot help

With several URLs (an Alertmanager cluster: every instance gets every alert, as Prometheus
does), a post succeeds when at least one instance took it; the others' failures are returned
for logging.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from detector.errors import (
    AlertmanagerRejectedError,
    AlertmanagerUnavailableError,
    ConfigError,
)

__all__ = [
    "AlertmanagerClient",
    "alerts_endpoint",
]

_API_PATH = "/api/v2/alerts"
_MAX_PER_REQUEST = 500


def alerts_endpoint(url: str) -> str:
    """The ``/api/v2/alerts`` URL of an Alertmanager given by its base URL (without any
    ``user:password@``, which :class:`AlertmanagerClient` sends as basic auth instead).

    A path prefix (``--web.route-prefix``) is kept; a URL already ending in the API path is
    taken as it is.

    >>> alerts_endpoint("http://alertmanager:9093")
    'http://alertmanager:9093/api/v2/alerts'
    >>> alerts_endpoint("https://bridge:s3cret@am.example/prefix/")
    'https://am.example/prefix/api/v2/alerts'

    Raises:
        ConfigError: not an http(s) URL with a host (the message does not repeat the URL: it
            may hold a password).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "an Alertmanager URL must be http(s)://[user:password@]host[:port][/prefix]"
        )
    netloc = parts.netloc.rpartition("@")[2]
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))
    return base if base.endswith(_API_PATH) else base + _API_PATH


def _basic_auth(url: str) -> str | None:
    """The Authorization header for ``user:password@`` in ``url``, if any."""
    parts = urlsplit(url.strip())
    if parts.username is None:
        return None
    user, password = unquote(parts.username), unquote(parts.password or "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class AlertmanagerClient:
    """Posts alerts to one or more Alertmanager instances.

    Args:
        urls: base URLs of the instances (``user:password@`` in one is sent as basic auth
            and never logged: :attr:`endpoints` are without it).
        timeout_s: per request.
    """

    def __init__(self, urls: Sequence[str], timeout_s: float = 10.0) -> None:
        if not urls:
            raise ConfigError("at least one Alertmanager URL is needed")
        self.endpoints = [alerts_endpoint(u) for u in urls]
        self._auth = dict(zip(self.endpoints, (_basic_auth(u) for u in urls), strict=True))
        self.timeout_s = timeout_s

    def post(self, alerts: Sequence[dict[str, Any]]) -> list[str]:
        """POST ``alerts`` (in chunks) to every instance.

        Returns:
            The failures of instances that did not take them while another did (to log).

        Raises:
            AlertmanagerRejectedError: every instance that answered refused the payload.
            AlertmanagerUnavailableError: no instance took them, and one at least may later.
        """
        if not alerts:
            return []
        unavailable: list[str] = []
        rejected: list[str] = []
        ok = 0
        for endpoint in self.endpoints:
            try:
                for i in range(0, len(alerts), _MAX_PER_REQUEST):
                    self._post_one(endpoint, alerts[i : i + _MAX_PER_REQUEST])
                ok += 1
            except AlertmanagerRejectedError as exc:
                rejected.append(str(exc))
            except AlertmanagerUnavailableError as exc:
                unavailable.append(str(exc))
        if ok:
            return unavailable + rejected
        if unavailable:
            raise AlertmanagerUnavailableError("; ".join(unavailable + rejected))
        raise AlertmanagerRejectedError("; ".join(rejected))

    def _post_one(self, endpoint: str, alerts: Sequence[dict[str, Any]]) -> None:
        body = json.dumps(list(alerts), separators=(",", ":")).encode()
        request = urllib.request.Request(
            endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "vae-detector-bridge"},
        )
        auth = self._auth.get(endpoint)
        if auth:
            request.add_unredirected_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = _body(exc)
            text = f"{endpoint}: HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
            if exc.code in (400, 422):
                raise AlertmanagerRejectedError(text) from None
            if exc.code == 404:
                text += " (is this an Alertmanager with the v2 API?)"
            raise AlertmanagerUnavailableError(text) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertmanagerUnavailableError(f"{endpoint}: {reason}") from None


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read(500).decode("utf-8", "replace").strip()
    except Exception:
        return ""
