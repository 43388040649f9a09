"""The HTTP side of the service client: one :class:`ApiClient` per command, errors as one line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiClient", "ClientError", "problem_line"]

PROGRESS_MIN_BYTES = 1 << 20  # a download shows a progress bar from this size on (on a terminal)
_CHUNK = 1 << 16


class ClientError(Exception):
    """A failure to report as one line (no traceback): the message says what and where."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def problem_line(body: Mapping[str, Any], status: int) -> str:
    """An RFC 9457 problem as one line: ``Title (status): detail``, the bad fields named
    (``field: message; ...``) when the problem lists them."""
    title = str(body.get("title") or f"HTTP {status}")
    errors = body.get("errors")
    detail: str
    if isinstance(errors, list) and errors:
        detail = "; ".join(
            f"{e.get('field')}: {e.get('message')}" if isinstance(e, Mapping) and e.get("field") else str(e)
            for e in errors
        )
    else:
        detail = str(body.get("detail") or "")
    line = f"{title} ({status})"
    if detail and detail != title:
        line += f": {detail}"
    return _one_line(line)


class ApiClient:
    """Requests to the API at ``server`` with the bearer token ``token`` (none: no Authorization header,
    which the API answers with 401)."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)
        except (httpx.InvalidURL, ValueError, TypeError) as err:
            raise ClientError(f"--server {server!r} is not a usable URL ({err})") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ requests
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None

    def _transport_error(self, err: httpx.HTTPError) -> ClientError:
        if isinstance(err, httpx.ConnectError):
            reason = _one_line(str(err)) or "connection failed"
            return ClientError(
                f"cannot connect to the DAIK server at {self.server}: {reason} "
                "(start it with `daik api` / `daik up`, or point --server or DAIK_SERVER at it)"
            )
        if isinstance(err, httpx.TimeoutException):
            return ClientError(f"the DAIK server at {self.server} did not answer within {self.timeout:g} s")
        if isinstance(err, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return ClientError(f"--server {self.server!r} is not an http(s) URL ({_one_line(str(err))})")
        return ClientError(
            f"request to the DAIK server at {self.server} failed: {_one_line(str(err)) or type(err).__name__}"
        )

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        raise ClientError(self._error_line(response))

    def _error_line(self, response: httpx.Response) -> str:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("title" in body or "detail" in body):
            line = problem_line(body, status)
        else:
            text = _one_line(response.text)[:200]
            line = f"HTTP {status} from {self.server}{response.request.url.path}"
            if text:
                line += f": {text}"
        if status == 401:
            line += (
                " (set DAIK_TOKEN to an API token: `daik token create` on the server, or its bootstrap token)"
                if not self.token
                else " (DAIK_TOKEN is not a valid token for this server)"
            )
        return line

    def get(self, path: str, **params: Any) -> Any:
        return self._check(self._send("GET", path, params=_params(params))).json()

    def get_text(self, path: str, **params: Any) -> str:
        return self._check(self._send("GET", path, params=_params(params))).text

    def post(
        self, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None, **params: Any
    ) -> Any:
        response = self._send("POST", path, json=body, headers=dict(headers or {}), params=_params(params))
        return self._check(response).json()

    def download(self, path: str, dest: Path, *, progress: bool = True) -> int:
        """GET ``path`` into the file ``dest`` (written to ``dest.part`` first, renamed when complete);
        a progress bar on stderr for a large file when stderr is a terminal. Returns the bytes written."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            with self._http.stream("GET", path, headers={"Accept": "*/*"}) as response:
                if not response.is_success:
                    response.read()
                    raise ClientError(self._error_line(response))
                total = int(response.headers.get("content-length") or 0)
                bar = None
                if progress and total >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
                    from tqdm import tqdm

                    bar = tqdm(
                        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, leave=False
                    )
                written = 0
                try:
                    with part.open("wb") as f:
                        for chunk in response.iter_bytes(_CHUNK):
                            f.write(chunk)
                            written += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
        except httpx.HTTPError as err:
            part.unlink(missing_ok=True)
            raise self._transport_error(err) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(dest)
        return written


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones."""
    return {k: v for k, v in params.items() if v is not None and v != [] and v is not False}
