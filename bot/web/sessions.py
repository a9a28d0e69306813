"""The gallery's cookies: a signed session token, and the signed ``state`` of a sign-in under way.

A session cookie is ``<token>.<signature>``: the token is 32 random bytes, the signature an HMAC-SHA256
of it under a key derived from DISCORD_CLIENT_SECRET, and the store keeps only the token's SHA-256, so
neither a copy of the database nor a forged cookie signs anyone in. Both cookies are ``HttpOnly`` and
``SameSite=Lax`` (Discord's redirect back is a top-level GET, which Lax lets through), and ``Secure``
when the gallery is served over https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

SESSION_COOKIE = "latentcord_session"
STATE_COOKIE = "latentcord_signin"
#: How long a sign-in lasts; the servers a member is in are read again at the next sign-in.
SESSION_TTL_S = 12 * 3600.0
#: How long a member has on Discord's page before the state of their sign-in expires.
STATE_TTL_S = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool  # the gallery's public address is https

    def set(self, response: web.StreamResponse, name: str, value: str, *, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=self.secure)

    def clear(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(name, path="/", httponly=True, samesite="Lax", secure=self.secure)


class CookieSigner:
    """Signs and checks the gallery's cookie values under a key derived from the OAuth2 client's secret."""

    def __init__(self, client_secret: str) -> None:
        self._key = hmac.new(client_secret.encode(), b"latentcord gallery cookies v1", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "CookieSigner(<key hidden>)"

    def sign(self, value: str) -> str:
        return f"{value}.{self._signature(value)}"

    def unsign(self, signed: str | None) -> str | None:
        """The value of a cookie this signer signed, or None for anything else (missing, altered, forged)."""
        if not signed or "." not in signed:
            return None
        value, _, signature = signed.rpartition(".")
        return value if hmac.compare_digest(signature, self._signature(value)) else None

    def _signature(self, value: str) -> str:
        return _b64(hmac.new(self._key, value.encode(), hashlib.sha256).digest())


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()
