"""Decoding and redaction of protocol messages for reports: JWTs, form bodies, redirects, HTML.

What the report shows beside each exchange: query and form parameters, JSON bodies, the
``Location`` of a redirect with its parameters, the claims of any compact JWT found (header and
payload, never the signature), ``authorization_details`` parsed, and the error of an HTML error
page. Secrets are masked: client secrets, passwords, tokens (only a prefix and the length are
kept), code verifiers, CSRF tokens, cookies and ``Authorization`` headers.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["decode_jwt", "error_page", "mask_url", "parse_forms", "redact", "summarize_body", "summarize_url"]

SECRET_KEYS = {"client_secret", "password", "code_verifier", "csrf_token", "admin_token", "authorization",
               "cookie", "set-cookie", "client_assertion", "pin", "otp"}
TOKEN_KEYS = {"access_token", "id_token", "refresh_token", "code", "request_uri", "sad", "state", "nonce"}
_JWT = re.compile(r"^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*$")


def _mask(value: str) -> str:
    return f"{value[:6]}… ({len(value)} chars)" if len(value) > 10 else "…"


def decode_jwt(token: str) -> dict[str, Any] | None:
    """Header and claims of a compact JWS (not verified: for display only); None if not a JWT."""
    if not _JWT.match(token):
        return None
    try:
        header, payload, _sig = token.split(".")
        decoded = [json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in (header, payload)]
    except (ValueError, json.JSONDecodeError):
        return None
    return {"header": decoded[0], "claims": decoded[1]}


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secrets masked and JWTs decoded (recursively)."""
    lowered = key.lower()
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if lowered in SECRET_KEYS:
            return "***"
        jwt = decode_jwt(value)
        if jwt is not None:
            return {"jwt": jwt, "token": _mask(value)}
        if lowered == "authorization_details":
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        if lowered in TOKEN_KEYS:
            return _mask(value)
        if value.startswith(("http://", "https://")):
            return mask_url(value)
        if len(value) > 400:
            return value[:200] + f"… ({len(value)} chars)"
    return value


_CAPABILITY = re.compile(r"^[A-Za-z0-9_-]{24,}$")
"""A path segment that is a bearer capability (a review link's token, a login request id)."""


def _masked_path(path: str) -> str:
    return "/".join(_mask(part) if _CAPABILITY.match(part) else part for part in path.split("/"))


def mask_url(url: str) -> str:
    """A URL with its capability path segments and its query values masked (a report is shared)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{_masked_path(parts.path)}" if parts.scheme else _masked_path(parts.path)
    params = parse_qsl(parts.query, keep_blank_values=True)
    return base + ("?" + "&".join(f"{k}=…" for k, _ in params) if params else "")


def summarize_url(url: str) -> dict[str, Any]:
    """``{"url": path without query, "params": {...}}`` with parameters decoded and redacted, and the
    capability segments of the path (a review link's token) masked."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = _masked_path(parts.path)
    base = f"{parts.scheme}://{parts.netloc}{path}" if parts.scheme else path
    return {"url": base, "params": redact(params)} if params else {"url": base}


def summarize_body(content_type: str, body: bytes) -> Any:
    """A readable, redacted form of a request or response body."""
    ctype = content_type.split(";")[0].strip().lower()
    if not body:
        return None
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            return redact(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            return f"(invalid JSON, {len(body)} bytes)"
    if ctype == "application/x-www-form-urlencoded":
        return redact(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
    if ctype == "text/html":
        text = body.decode("utf-8", "replace")
        title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        error = error_page(text)
        summary: dict[str, Any] = {"html": (title.group(1).strip() if title else "page"), "bytes": len(body)}
        if error:
            summary["error"], summary["error_description"] = error
        return summary
    return f"({ctype or 'binary'}, {len(body)} bytes)"


class _FormParser(HTMLParser):
    """Collects the forms of a page: action, method, fields (inputs, selects, buttons)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self.texts: list[tuple[str, str]] = []
        self._stack: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self._stack.append((tag, attributes))
        if tag == "form":
            self._current = {"action": attributes.get("action", ""), "method": attributes.get("method", "get").lower(),
                             "fields": [], "buttons": []}
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "button"):
            kind = attributes.get("type", "submit" if tag == "button" else "text").lower()
            name = attributes.get("name")
            if not name:
                return
            if kind == "submit":
                self._current["buttons"].append((name, attributes.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    self._current["fields"].append((name, attributes.get("value", "on")))
            else:
                self._current["fields"].append((name, attributes.get("value", "")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if data.strip() and self._stack:
            tag, attributes = self._stack[-1]
            self.texts.append((tag, attributes.get("class", "") + "|" + data.strip()))


def parse_forms(html: str) -> list[dict[str, Any]]:
    """The forms of an HTML page: ``[{"action", "method", "fields": [(name, value)], "buttons": [(name, value)]}]``."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def error_page(html: str) -> tuple[str, str] | None:
    """``(error, description)`` of a SignLab error page (``shared/templates/signlab_error.html``, the
    portal's refusal page), else None."""
    if 'class="card error"' not in html:
        return None
    parser = _FormParser()
    parser.feed(html)
    # Marked elements first (the shared error page and the portal's refusal page mark them), else
    # the first code and paragraph.
    marked = {text.split("|", 1)[0]: text.split("|", 1)[1] for _, text in parser.texts}
    code = marked.get("protocol-error") or next((t.split("|", 1)[1] for tag, t in parser.texts if tag == "code"), "")
    description = marked.get("error-description") or next((t.split("|", 1)[1] for tag, t in parser.texts if tag == "p"), "")
    return (code or "error"), description
