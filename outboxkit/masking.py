"""Keeping secrets out of logs and error messages: the one place that masks passwords.

Every plugin masks through these functions. Only passwords are hidden (``user:***@host``);
addresses, ports, users and paths stay, so an error still says where it tried to connect. URLs
are masked by pattern, never parsed, so a malformed URL (a bad port, a trailing ``:``) is
masked like any other instead of being replaced by a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["mask_dsn", "mask_text", "mask_url", "mask_urls", "masker", "scrub"]

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
_USERINFO = re.compile(rf"^({_SCHEME})([^?#\s]*)@")
"""A URL's userinfo: everything up to the last ``@`` before the query or fragment (a password
with a raw ``/`` or ``@`` is masked whole rather than cut at it)."""
_URL_IN_TEXT = re.compile(rf"{_SCHEME}[^\s'\"<>,]+")
_KV_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^\s&'\"]+)")
"""``password=...`` of a libpq key/value DSN or of a URL's query string."""


def _mask_userinfo(match: re.Match[str], user_is_secret: bool) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:***@"
    return f"{scheme}***@" if user_is_secret and user else match.group(0)


def mask_url(url: str, *, user_is_secret: bool = False) -> str:
    """``url`` with its password replaced by ``***``.

    ``user_is_secret``: a userinfo without a password is a token (``nats://TOKEN@host``) and is
    masked as a whole.
    """
    masked = _USERINFO.sub(lambda m: _mask_userinfo(m, user_is_secret), url, count=1)
    return _KV_PASSWORD.sub(r"\1***", masked)


def mask_dsn(dsn: str) -> str:
    """A DSN with its password masked: URL form or libpq ``key=value`` form."""
    return mask_text(dsn)


def mask_text(text: str, *, user_is_secret: bool = False) -> str:
    """``text`` with the password of every URL and every ``password=...`` in it masked."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0), user_is_secret=user_is_secret), text)
    return _KV_PASSWORD.sub(r"\1***", text)


def mask_urls(urls: Iterable[str], *, user_is_secret: bool = False) -> str:
    """A list of servers for a message, comma-separated, each password masked."""
    return ", ".join(mask_url(url, user_is_secret=user_is_secret) for url in urls)


def _password(url: str, user_is_secret: bool) -> str | None:
    found = _USERINFO.match(url)
    if found is None:
        return None
    user, colon, password = found.group(2).partition(":")
    return password if colon else (user if user_is_secret else None)


def masker(secrets: Iterable[str] = (), *, user_is_secret: bool = False) -> Callable[[str], str]:
    """A function that masks text like :func:`mask_text` and also hides each of ``secrets``
    wherever it appears: a plain value (a token, a key) as ``***``, a URL by its masked form,
    and a URL's password also on its own (drivers sometimes quote it). Values shorter than 3
    characters are not hidden on their own."""
    hidden: dict[str, str] = {}
    for secret in secrets:
        if len(secret) < 3:
            continue
        if "://" not in secret:
            hidden[secret] = "***"
            continue
        hidden[secret] = mask_text(secret, user_is_secret=user_is_secret)
        password = _password(secret, user_is_secret)
        if password and len(password) >= 3:
            hidden[password] = "***"
    ordered = sorted(hidden.items(), key=lambda item: len(item[0]), reverse=True)

    def mask(text: str) -> str:
        for value, shown in ordered:
            text = text.replace(value, shown)
        return mask_text(text, user_is_secret=user_is_secret)

    return mask


def scrub(text: str, *urls: str, user_is_secret: bool = False) -> str:
    """``text`` (e.g. a driver's error) masked, and the password of each of ``urls`` hidden
    wherever it appears on its own (drivers sometimes quote it)."""
    return masker(urls, user_is_secret=user_is_secret)(text)
