"""Discord's OAuth2 side: "Sign in with Discord" for a web app, by the authorization-code grant.

A web app sends the browser to ``{url}/oauth2/authorize`` (outside ``/api/v10``, as
``https://discord.com/oauth2/authorize`` is). The fake approves at once as the user a test signed
in with :meth:`OAuth2Provider.sign_in` (as Discord does for an app the user already authorized)
and redirects to ``redirect_uri`` with a single-use ``code`` and the app's ``state``. The app
trades the code at ``POST /api/v10/oauth2/token`` (form-encoded, client credentials as HTTP Basic
auth or as form fields) for a bearer token, then calls ``GET /api/v10/users/@me`` and
``GET /api/v10/users/@me/guilds`` with ``Authorization: Bearer <token>``.

Errors follow Discord: the token endpoint answers RFC 6749 errors
(``{"error": "invalid_grant", "error_description": ...}``), the API answers a bad bearer token
with 401 ``{"message": "401: Unauthorized", "code": 0}``, and a refused authorization comes back
to the app as ``error=access_denied``. Codes live 10 minutes and access tokens 7 days, measured
on :attr:`OAuth2Provider.monotonic` (the fake's clock: real monotonic time plus what a test
advanced it by).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yarl
from aiohttp import web

from tests.fakediscord.models import FakeMember, FakeUser, RestCall
from tests.fakediscord.rest.request import ApiReply, ApiRequest
from tests.fakediscord.validation import DiscordAPIError

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

__all__ = [
    "AUTHORIZE_PATH",
    "CODE_LIFETIME",
    "KNOWN_SCOPES",
    "TOKEN_LIFETIME",
    "OAuth2Authorization",
    "OAuth2Provider",
    "OAuth2Token",
]

AUTHORIZE_PATH = "/oauth2/authorize"
KNOWN_SCOPES = frozenset({"identify", "guilds", "email"})
"""The scopes this fake grants; Discord has more, a sign-in needs no others."""
CODE_LIFETIME = 10 * 60.0
TOKEN_LIFETIME = 7 * 24 * 60 * 60
DENIED_DESCRIPTION = "The resource owner or authorization server denied the request"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_UNAUTHORIZED = (401, 0, "401: Unauthorized")


@dataclass(frozen=True, slots=True)
class OAuth2Authorization:
    """One visit to the authorize page that got as far as the user: approved (``code``) or denied."""

    user_id: int
    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    state: str | None
    code: str | None
    """The code the app was sent; None when the user pressed Cancel (:meth:`OAuth2Provider.deny_next`)."""

    @property
    def denied(self) -> bool:
        return self.code is None


@dataclass(slots=True)
class OAuth2Token:
    """A bearer token a user granted an app: ``fake.oauth.tokens[access_token]``."""

    access_token: str
    refresh_token: str
    user_id: int
    scopes: tuple[str, ...]
    client_id: str
    expires_at: float

    @property
    def scope(self) -> str:
        """The scopes as the token endpoint reports them (space-separated)."""
        return " ".join(self.scopes)


@dataclass(slots=True)
class _Code:
    user_id: int
    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    expires_at: float
    used: bool = False


class OAuth2Provider:
    """The state of Discord's OAuth2 side for the one application: ``fake.oauth``.

    ``client_id`` (the application id, as on Discord) and ``client_secret`` may be changed by a
    test; so may ``redirect_uris`` (None accepts any absolute ``redirect_uri``, a set only those,
    as the Developer Portal's list does) and ``monotonic`` (the clock codes and tokens expire on).
    """

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self.client_id: str = str(fake.application_id)
        self.client_secret: str = "fake-client-secret"
        self.redirect_uris: set[str] | None = None
        self.monotonic: Callable[[], float] = fake.clock.monotonic
        self.signed_in: FakeUser | None = None
        """The user whose browser is signed in to Discord; None: the authorize page refuses (401)."""
        self.authorizations: list[OAuth2Authorization] = []
        self.tokens: dict[str, OAuth2Token] = {}
        """Live access tokens by their value; :meth:`revoke` removes one."""
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, OAuth2Token] = {}
        self._deny_next = False

    # -- what a test does ------------------------------------------------------------------------

    def sign_in(self, user: FakeUser | FakeMember) -> None:
        """Sign the browser in to Discord as ``user``: the authorize page approves as them at once."""
        self.signed_in = user.user if isinstance(user, FakeMember) else user

    def sign_out(self) -> None:
        self.signed_in = None

    def deny_next(self) -> None:
        """The next authorization the user sees is refused, as if they pressed Cancel."""
        self._deny_next = True

    def grant(self, user: FakeUser | FakeMember, scopes: Iterable[str] = ("identify", "guilds")) -> OAuth2Token:
        """A token for ``user`` without the browser round trip, for tests that start signed in."""
        user = user.user if isinstance(user, FakeMember) else user
        wanted = tuple(dict.fromkeys(scopes))
        if "identify" not in wanted or not set(wanted) <= KNOWN_SCOPES:
            raise ValueError(f"scopes must include identify and be among {sorted(KNOWN_SCOPES)}: {wanted}")
        return self._issue(user.id, wanted, self.client_id)

    def revoke(self, token: str) -> bool:
        """Invalidate the grant of an access or refresh token (both die, as on Discord); False if unknown."""
        grant = self.tokens.get(token) or self._refresh_tokens.get(token)
        if grant is None:
            return False
        self.tokens.pop(grant.access_token, None)
        self._refresh_tokens.pop(grant.refresh_token, None)
        self._fake.feed.notify()
        return True

    # -- what the API's handlers ask -------------------------------------------------------------

    def bearer(self, authorization: str | None) -> OAuth2Token | None:
        """The live token of an ``Authorization: Bearer`` header; None for any other kind of header.

        An unknown, revoked or expired bearer token raises 401 ``401: Unauthorized``, as Discord answers.
        """
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = self.tokens.get(credentials.strip())
        if token is None:
            raise DiscordAPIError(*_UNAUTHORIZED)
        if self.monotonic() >= token.expires_at:
            self.tokens.pop(token.access_token, None)
            raise DiscordAPIError(*_UNAUTHORIZED)
        return token

    def user_of(self, token: OAuth2Token) -> FakeUser:
        user = self._fake.users.get(token.user_id)
        if user is None:
            raise DiscordAPIError(*_UNAUTHORIZED)
        return user

    # -- GET /oauth2/authorize (the browser) -----------------------------------------------------

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """The authorize page: validate, then redirect back to the app with a code or ``access_denied``."""
        response = self._authorize(request.query)
        self._fake.calls.append(
            RestCall(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                body=None,
                files=(),
                status=response.status,
                route=AUTHORIZE_PATH,
                at=self._fake.clock.monotonic(),
            )
        )
        self._fake.feed.notify()
        return response

    def _authorize(self, query: Mapping[str, str]) -> web.Response:
        client_id = query.get("client_id", "")
        if not client_id or client_id != self.client_id:
            return _page(400, f"Unknown Application: client_id {client_id!r} is not an application's id.")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri:
            return _page(400, "Invalid OAuth2 redirect_uri: redirect_uri is missing.")
        target = yarl.URL(redirect_uri)
        if not target.absolute or (self.redirect_uris is not None and redirect_uri not in self.redirect_uris):
            return _page(400, f"Invalid OAuth2 redirect_uri: {redirect_uri!r} is not registered for this application.")
        if query.get("response_type") != "code":
            return _page(400, f"Unsupported response_type {query.get('response_type')!r}: only 'code' is.")
        scopes = tuple(dict.fromkeys(s for s in re.split(r"[ +]+", query.get("scope", "")) if s))
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if not scopes or unknown:
            return _page(400, f"Invalid scope: {' '.join(unknown) or '(none)'}.")
        if "identify" not in scopes:
            return _page(400, "Invalid scope: a sign-in must ask for identify.")
        user = self.signed_in
        if user is None:
            return _page(401, "Not signed in to Discord: log in first (fake.oauth.sign_in(user)).")
        state = query.get("state")
        answer: dict[str, str]
        if self._deny_next:
            self._deny_next = False
            code = None
            answer = {"error": "access_denied", "error_description": DENIED_DESCRIPTION}
        else:
            code = secrets.token_urlsafe(22)
            self._codes[code] = _Code(
                user.id, client_id, scopes, redirect_uri, expires_at=self.monotonic() + CODE_LIFETIME
            )
            answer = {"code": code}
        if state is not None:
            answer["state"] = state
        self.authorizations.append(OAuth2Authorization(user.id, client_id, scopes, redirect_uri, state, code))
        return web.Response(status=302, headers={"Location": str(target.update_query(answer))})

    # -- POST /api/v10/oauth2/token and /oauth2/token/revoke (the app's server) --------------------

    async def token(self, request: ApiRequest) -> ApiReply:
        """Trade a code (or a refresh token) for an access token."""
        form = _form(request)
        if not self._client_authenticated(request, form):
            return ApiReply(401, {"error": "invalid_client"})
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        return _token_error("unsupported_grant_type", "Unsupported grant type")

    async def revoke_token(self, request: ApiRequest) -> ApiReply:
        """RFC 7009 revocation: an unknown token is no error."""
        form = _form(request)
        if not self._client_authenticated(request, form):
            return ApiReply(401, {"error": "invalid_client"})
        if not form.get("token"):
            return _token_error("invalid_request", 'Missing "token" in request.')
        self.revoke(form["token"])
        return ApiReply(200, {})

    def _client_authenticated(self, request: ApiRequest, form: Mapping[str, str]) -> bool:
        """HTTP Basic auth if the request has it, else ``client_id``/``client_secret`` form fields."""
        scheme, _, credentials = (request.authorization or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            client_id, _, secret = decoded.partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return secrets.compare_digest(client_id.encode(), self.client_id.encode()) and secrets.compare_digest(
            secret.encode(), self.client_secret.encode()
        )

    def _exchange_code(self, form: Mapping[str, str]) -> ApiReply:
        code_value = form.get("code")
        if not code_value:
            return _token_error("invalid_request", 'Missing "code" in request.')
        code = self._codes.get(code_value)
        if code is None or code.used or code.client_id != self.client_id or self.monotonic() >= code.expires_at:
            return _token_error("invalid_grant", 'Invalid "code" in request.')
        if form.get("redirect_uri") != code.redirect_uri:
            return _token_error("invalid_grant", 'Invalid "redirect_uri" in request.')
        code.used = True
        return self._token_reply(self._issue(code.user_id, code.scopes, code.client_id))

    def _refresh(self, form: Mapping[str, str]) -> ApiReply:
        old = self._refresh_tokens.pop(form.get("refresh_token") or "", None)
        if old is None:
            return _token_error("invalid_grant", 'Invalid "refresh_token" in request.')
        return self._token_reply(self._issue(old.user_id, old.scopes, old.client_id))

    def _issue(self, user_id: int, scopes: tuple[str, ...], client_id: str) -> OAuth2Token:
        token = OAuth2Token(
            access_token=secrets.token_urlsafe(22),
            refresh_token=secrets.token_urlsafe(22),
            user_id=user_id,
            scopes=scopes,
            client_id=client_id,
            expires_at=self.monotonic() + TOKEN_LIFETIME,
        )
        self.tokens[token.access_token] = token
        self._refresh_tokens[token.refresh_token] = token
        return token

    @staticmethod
    def _token_reply(token: OAuth2Token) -> ApiReply:
        return ApiReply(
            200,
            {
                "access_token": token.access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "refresh_token": token.refresh_token,
                "scope": token.scope,
            },
        )


def _page(status: int, text: str) -> web.Response:
    """A plain-text error page in the browser (no redirect: the app or its redirect_uri is not trusted)."""
    return web.Response(status=status, text=text)


def _form(request: ApiRequest) -> dict[str, str]:
    """The form fields of a form-encoded body; Discord reads no JSON body on its token endpoint."""
    if request.content_type != FORM_CONTENT_TYPE or not isinstance(request.body, dict):
        return {}
    return {str(k): str(v) for k, v in request.body.items()}


def _token_error(error: str, description: str) -> ApiReply:
    return ApiReply(400, {"error": error, "error_description": description})
