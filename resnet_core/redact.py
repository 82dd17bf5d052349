"""Secrets in storage URLs, in one place: how a URL is read, shown, and kept out of every printed line and file.

A database URL can carry a secret in three places: the password of its userinfo (``user:PASSWORD@host``), query
parameters (``?password=…``, ``sslpassword=…``, ``passfile=…``), and the tail of a password that holds a raw ``@``
(``user:Wx9@Tail@host``: the userinfo ends at the *last* ``@`` before the path). URLs are parsed with SQLAlchemy's
``make_url`` after a raw ``@`` in the password is percent-encoded, so the database gets the password the user meant
and nothing of it reaches a host name or an error message.

- ``connect_url(url)``: the URL to hand to SQLAlchemy (a raw ``@`` in the password encoded).
- ``mask_url(url)``: what to print, log, record or upload (``postgresql://user:***@host/db?password=***``).
- ``url_secrets(url)``: the secret strings a URL holds, for scrubbing text that may echo them (a driver's error).
- ``scrub(text)``: every URL in ``text`` masked, and every secret of ``urls`` replaced by ``***``.
"""
from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import parse_qsl, unquote, urlencode

MASK = "***"
SECRET_PARAM = re.compile(r"pass|secret|token|credential|key$", re.I)   # password, sslpassword, passfile, …
URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _split(url: str) -> tuple[str, str | None, str | None, str, str]:
    """``scheme://user:password@hostpath?query`` → (scheme, user, password, hostpath, query); the userinfo ends at
    the last ``@`` before the query, so a raw ``@`` belongs to the password."""
    scheme, rest = url.split("://", 1)
    head, _, query = rest.partition("?")
    if "@" not in head:
        return scheme, None, None, head, query
    creds, hostpath = head.rsplit("@", 1)
    user, sep, password = creds.partition(":")
    return scheme, user, password if sep else None, hostpath, query


def connect_url(url: str) -> str:
    """``url`` with a raw ``@`` in its password percent-encoded (``make_url`` would otherwise end the password at
    the first ``@`` and send the rest as the host name)."""
    if "://" not in url:
        return url
    scheme, user, password, hostpath, query = _split(url)
    if password is None or "@" not in password:
        return url
    return f"{scheme}://{user}:{password.replace('@', '%40')}@{hostpath}" + (f"?{query}" if query else "")


def mask_url(url: str) -> str:
    """``url`` as it may be shown: the password and every secret query parameter replaced by ``***``; the rest
    (driver, user, host, port, database, other parameters) as written."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme, user, password, hostpath, query = _split(url)
    try:
        make_url(connect_url(url))
    except (ArgumentError, ValueError):   # not a URL SQLAlchemy reads: show the scheme and host only
        return f"{scheme}://{MASK}@{hostpath.split('/', 1)[0]}" if user is not None else f"{scheme}://{hostpath}"
    creds = "" if user is None else f"{user}:{MASK}@" if password is not None else f"{user}@"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*/:")
    return f"{scheme}://{creds}{hostpath}" + (f"?{query}" if query else "")


def url_secrets(url: str) -> list[str]:
    """The secret strings in ``url``: the password (as written and decoded) and secret query values."""
    if "://" not in url:
        return []
    _, _, password, _, query = _split(url)
    found = [password, unquote(password)] if password else []
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if SECRET_PARAM.search(k) and v]
    found += [p for p in (password or "").split("@") if len(p) >= 4]   # a raw '@': no piece of it either
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """``text`` with every URL in it masked (``mask_url``) and every secret of ``urls`` replaced by ``***``."""
    for url in urls:
        for secret in url_secrets(url):
            text = text.replace(secret, MASK)
    return URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
