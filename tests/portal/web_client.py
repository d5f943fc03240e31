"""The web portal as a browser without JavaScript sees it: pages over HTTP, cookies kept, forms posted
with the CSRF token the page carried."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ERROR = re.compile(r'<div class="error" role="alert"[^>]*>(.*?)</div>', re.S)


class WebClient:
    def __init__(self, base_url: str, verify: Any = True) -> None:
        # httpx logs every request URL at INFO: a reset link's token would reach the log this test's
        # stack watches for secrets (the client's log, not Tollway's).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=15, verify=verify)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        match = _CSRF.search(page.text)
        assert match is not None, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def post(self, path: str, data: dict[str, str], form_page: str, **kwargs: Any) -> httpx.Response:
        """Posts `data` with the CSRF token of the page at `form_page`."""
        return self.http.post(path, data={"csrf_token": self.csrf(form_page), **data}, **kwargs)

    def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code == 303, (response.status_code, error_of(response))
        return self.get(response.headers["location"])

    def sign_up(self, email: str, password: str) -> httpx.Response:
        return self.post("/sign-up", {"email": email, "password": password}, "/sign-up")

    def sign_in(self, email: str, password: str) -> httpx.Response:
        return self.post("/sign-in", {"email": email, "password": password}, "/sign-in")

    def close(self) -> None:
        self.http.close()


def error_of(response: httpx.Response) -> str:
    """The page's error message as text, "" when it shows none."""
    match = _ERROR.search(response.text)
    if match is None:
        return ""
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).replace("Not done:", "").strip()
