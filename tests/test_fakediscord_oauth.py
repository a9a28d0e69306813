"""The fake Discord's OAuth2 side: "Sign in with Discord" by the authorization-code grant.

A web app (the gallery) signs members in against ``fake.oauth``; these tests drive the flow the
way such an app does, over HTTP: the browser's authorize redirect, the server's code exchange,
then ``users/@me`` and ``users/@me/guilds`` with the bearer token, and each refusal Discord gives.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl

from tests.fakediscord import FakeDiscord, FakeGuild, FakeUser

REDIRECT_URI = "http://127.0.0.1:9/auth/callback"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def authorize_url(fake: FakeDiscord, **overrides: str | None) -> yarl.URL:
    """The browser URL a web app builds from the API base, as the gallery does."""
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": fake.oauth.client_id,
        "scope": "identify guilds",
        "state": "st-123",
        "redirect_uri": REDIRECT_URI,
        "prompt": "none",
        **overrides,
    }
    base = fake.api_base.removesuffix("/api/v10")
    return yarl.URL(f"{base}/oauth2/authorize").with_query({k: v for k, v in query.items() if v is not None})


async def authorize(http: aiohttp.ClientSession, fake: FakeDiscord, **overrides: str | None) -> yarl.URL:
    """Follow the authorize page to its redirect and return where it sends the browser."""
    async with http.get(authorize_url(fake, **overrides), allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        return yarl.URL(response.headers["Location"])


async def get_code(http: aiohttp.ClientSession, fake: FakeDiscord, **overrides: str | None) -> str:
    location = await authorize(http, fake, **overrides)
    return location.query["code"]


async def exchange(
    http: aiohttp.ClientSession,
    fake: FakeDiscord,
    code: str,
    *,
    redirect_uri: str = REDIRECT_URI,
    secret: str | None = None,
    basic: bool = True,
    grant_type: str = "authorization_code",
) -> tuple[int, dict[str, Any]]:
    """The app server's token request; credentials as Basic auth (``basic``) or as form fields."""
    secret = fake.oauth.client_secret if secret is None else secret
    form = {"grant_type": grant_type, "code": code, "redirect_uri": redirect_uri}
    headers = {}
    if basic:
        credentials = base64.b64encode(f"{fake.oauth.client_id}:{secret}".encode()).decode()
        headers["Authorization"] = f"Basic {credentials}"
    else:
        form |= {"client_id": fake.oauth.client_id, "client_secret": secret}
    async with http.post(f"{fake.api_base}/oauth2/token", data=form, headers=headers) as response:
        return response.status, await response.json()


async def api_get(
    http: aiohttp.ClientSession, fake: FakeDiscord, path: str, token: str, **query: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{fake.api_base}{path}", headers=headers, params=query) as response:
        return response.status, await response.json()


async def sign_in_token(http: aiohttp.ClientSession, fake: FakeDiscord, scope: str = "identify guilds") -> str:
    status, body = await exchange(http, fake, await get_code(http, fake, scope=scope))
    assert status == 200, body
    return str(body["access_token"])


def three_guilds(fake: FakeDiscord, user: FakeUser) -> list[FakeGuild]:
    """Three guilds: ``user`` owns the first, is a member of the third, and is not in the second."""
    first = fake.add_guild("First", owner=user)
    second = fake.add_guild("Second")
    third = fake.add_guild("Third")
    fake.add_member(third, user)
    return [first, second, third]


# -- the whole flow ----------------------------------------------------------------------------------


async def test_sign_in_with_basic_credentials_sees_the_user_and_their_guilds(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    user = fake.add_user("alice", global_name="Alice")
    first, _, third = three_guilds(fake, user)
    fake.oauth.sign_in(fake.guilds[third.id].members[user.id])  # a FakeMember signs in as its user

    location = await authorize(http, fake)
    assert str(location.with_query(None)) == REDIRECT_URI
    assert location.query["state"] == "st-123" and location.query["code"]
    [grant] = fake.oauth.authorizations
    assert (grant.user_id, grant.scopes, grant.redirect_uri, grant.state) == (
        user.id,
        ("identify", "guilds"),
        REDIRECT_URI,
        "st-123",
    )
    assert not grant.denied and grant.code == location.query["code"]

    status, token = await exchange(http, fake, location.query["code"])
    assert status == 200, token
    assert token["token_type"] == "Bearer" and token["expires_in"] == 604800
    assert token["scope"] == "identify guilds" and token["access_token"] and token["refresh_token"]
    assert fake.oauth.tokens[token["access_token"]].user_id == user.id

    status, me = await api_get(http, fake, "/users/@me", token["access_token"])
    assert status == 200
    assert me["id"] == str(user.id) and me["username"] == "alice" and me["global_name"] == "Alice"
    assert me["avatar"] is None and me["discriminator"] == "0" and "email" not in me

    status, guilds = await api_get(http, fake, "/users/@me/guilds", token["access_token"])
    assert status == 200
    assert [g["id"] for g in guilds] == sorted([str(first.id), str(third.id)], key=int)
    by_id = {g["id"]: g for g in guilds}
    assert by_id[str(first.id)]["owner"] is True and by_id[str(third.id)]["owner"] is False
    assert by_id[str(first.id)]["name"] == "First"
    everyone = third.everyone.permissions
    assert by_id[str(third.id)]["permissions"] == str(everyone)
    assert all(g["icon"] is None and g["banner"] is None and g["features"] == [] for g in guilds)

    routes = [c.route for c in fake.calls]
    assert routes == ["/oauth2/authorize", "/oauth2/token", "/users/@me", "/users/@me/guilds"]


async def test_form_credentials_work_and_the_secret_is_never_recorded(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    fake.oauth.sign_in(fake.add_user("bob"))
    fake.oauth.client_secret = "s3cret-value"
    status, token = await exchange(http, fake, await get_code(http, fake), basic=False)
    assert status == 200, token
    [call] = fake.calls_to("POST", "/oauth2/token")
    assert call.body["client_secret"] == "***" and call.body["client_id"] == fake.oauth.client_id
    assert "s3cret-value" not in repr(fake.calls)


async def test_a_refresh_token_gives_a_new_access_token_once(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("carol"))
    _, first = await exchange(http, fake, await get_code(http, fake))
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    auth = aiohttp.BasicAuth(fake.oauth.client_id, fake.oauth.client_secret)
    async with http.post(f"{fake.api_base}/oauth2/token", data=form, auth=auth) as response:
        assert response.status == 200
        second = await response.json()
    assert second["access_token"] != first["access_token"] and second["scope"] == "identify guilds"
    assert (await api_get(http, fake, "/users/@me", second["access_token"]))[0] == 200
    async with http.post(f"{fake.api_base}/oauth2/token", data=form, auth=auth) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_grant"


async def test_the_bot_token_still_answers_the_bot_and_its_guilds(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    user = fake.add_user("dave")
    guilds = three_guilds(fake, user)
    headers = {"Authorization": "Bot fake-bot-token"}
    async with http.get(f"{fake.api_base}/users/@me", headers=headers) as response:
        assert response.status == 200
        me = await response.json()
    assert me["id"] == str(fake.bot_user.id) and me["bot"] is True and me["verified"] is True
    async with http.get(f"{fake.api_base}/users/@me/guilds", headers=headers) as response:
        assert response.status == 200
        assert [g["id"] for g in await response.json()] == [str(g.id) for g in guilds]
    async with http.get(f"{fake.api_base}/users/@me") as response:
        assert response.status == 401
        assert await response.json() == {"message": "401: Unauthorized", "code": 0}


async def test_a_bearer_token_is_no_bot_token(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    user = fake.add_user("erin")
    first, _, _ = three_guilds(fake, user)
    token = fake.oauth.grant(user).access_token
    status, body = await api_get(http, fake, f"/guilds/{first.id}", token)
    assert (status, body) == (401, {"message": "401: Unauthorized", "code": 0})


# -- refusals ------------------------------------------------------------------------------------------


async def test_wrong_or_missing_client_secret_is_invalid_client(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("frank"))
    code = await get_code(http, fake)
    assert await exchange(http, fake, code, secret="wrong") == (401, {"error": "invalid_client"})
    assert await exchange(http, fake, code, secret="wrong", basic=False) == (401, {"error": "invalid_client"})
    async with http.post(f"{fake.api_base}/oauth2/token", data={"grant_type": "authorization_code"}) as response:
        assert response.status == 401 and await response.json() == {"error": "invalid_client"}
    # The code survived the refusals: it is used up by a successful exchange only.
    assert (await exchange(http, fake, code))[0] == 200


async def test_a_code_is_single_use(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("grace"))
    code = await get_code(http, fake)
    assert (await exchange(http, fake, code))[0] == 200
    status, body = await exchange(http, fake, code)
    assert status == 400 and body["error"] == "invalid_grant" and body["error_description"]
    status, body = await exchange(http, fake, "never-issued")
    assert status == 400 and body["error"] == "invalid_grant"


async def test_redirect_uri_must_match_the_authorize(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("heidi"))
    code = await get_code(http, fake)
    status, body = await exchange(http, fake, code, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert status == 400 and body == {
        "error": "invalid_grant",
        "error_description": 'Invalid "redirect_uri" in request.',
    }
    assert (await exchange(http, fake, code))[0] == 200


async def test_a_code_expires_after_ten_minutes(
    fake: FakeDiscord, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.oauth.sign_in(fake.add_user("ivan"))
    now = fake.oauth.monotonic()
    monkeypatch.setattr(fake.oauth, "monotonic", lambda: now)
    fresh, stale = await get_code(http, fake), await get_code(http, fake)
    monkeypatch.setattr(fake.oauth, "monotonic", lambda: now + 599)
    assert (await exchange(http, fake, fresh))[0] == 200
    monkeypatch.setattr(fake.oauth, "monotonic", lambda: now + 601)
    status, body = await exchange(http, fake, stale)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_cancel_redirects_with_access_denied(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("judy"))
    fake.oauth.deny_next()
    location = await authorize(http, fake)
    assert str(location.with_query(None)) == REDIRECT_URI
    assert location.query["error"] == "access_denied" and location.query["error_description"]
    assert location.query["state"] == "st-123" and "code" not in location.query
    assert fake.oauth.authorizations[-1].denied
    assert "code" in (await authorize(http, fake)).query  # only the next one was refused


async def test_authorize_without_a_signed_in_user_is_refused(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    async with http.get(authorize_url(fake), allow_redirects=False) as response:
        assert response.status == 401 and "sign" in (await response.text()).lower()
    fake.oauth.sign_in(fake.add_user("kim"))
    fake.oauth.sign_out()
    async with http.get(authorize_url(fake), allow_redirects=False) as response:
        assert response.status == 401
    assert fake.oauth.authorizations == []
    assert [c.status for c in fake.calls_to("GET", "/oauth2/authorize")] == [401, 401]


async def test_authorize_validates_client_redirect_and_scopes(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("leo"))
    refused: list[dict[str, str | None]] = [
        {"client_id": "1234"},
        {"client_id": None},
        {"redirect_uri": None},
        {"response_type": "token"},
        {"scope": "identify bot"},
        {"scope": "guilds"},
        {"scope": ""},
    ]
    for overrides in refused:
        async with http.get(authorize_url(fake, **overrides), allow_redirects=False) as response:
            assert response.status == 400, overrides
            text = await response.text()
        if "client_id" in overrides:
            assert "client_id" in text
    assert fake.oauth.authorizations == []

    # Plus-separated scopes and no state: the redirect carries no state either.
    base = fake.api_base.removesuffix("/api/v10")
    raw = (
        f"{base}/oauth2/authorize?response_type=code&client_id={fake.oauth.client_id}"
        "&scope=identify+guilds+email&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fauth%2Fcallback"
    )
    async with http.get(yarl.URL(raw, encoded=True), allow_redirects=False) as response:
        assert response.status == 302
        location = yarl.URL(response.headers["Location"])
    assert "state" not in location.query
    assert fake.oauth.authorizations[-1].scopes == ("identify", "guilds", "email")
    status, token = await exchange(http, fake, location.query["code"])
    assert status == 200 and token["scope"] == "identify guilds email"
    status, me = await api_get(http, fake, "/users/@me", token["access_token"])
    assert status == 200 and me["email"] and me["verified"] is True


async def test_unsupported_grant_type(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("mia"))
    code = await get_code(http, fake)
    status, body = await exchange(http, fake, code, grant_type="client_credentials")
    assert status == 400 and body["error"] == "unsupported_grant_type"


async def test_a_revoked_token_is_unauthorized(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.oauth.sign_in(fake.add_user("nina"))
    token = await sign_in_token(http, fake)
    assert (await api_get(http, fake, "/users/@me", token))[0] == 200
    assert fake.oauth.revoke(token) and not fake.oauth.revoke(token)
    unauthorized = (401, {"message": "401: Unauthorized", "code": 0})
    assert await api_get(http, fake, "/users/@me", token) == unauthorized
    assert await api_get(http, fake, "/users/@me/guilds", token) == unauthorized
    assert await api_get(http, fake, "/users/@me", "never-issued") == unauthorized

    # The app's own sign-out: POST /oauth2/token/revoke.
    other = await sign_in_token(http, fake)
    auth = aiohttp.BasicAuth(fake.oauth.client_id, fake.oauth.client_secret)
    async with http.post(f"{fake.api_base}/oauth2/token/revoke", data={"token": other}, auth=auth) as response:
        assert response.status == 200
    assert await api_get(http, fake, "/users/@me", other) == unauthorized


async def test_guilds_need_the_guilds_scope(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    user = fake.add_user("olga")
    three_guilds(fake, user)
    fake.oauth.sign_in(user)
    token = await sign_in_token(http, fake, scope="identify")
    assert (await api_get(http, fake, "/users/@me", token))[0] == 200
    status, body = await api_get(http, fake, "/users/@me/guilds", token)
    assert (status, body) == (403, {"message": "Missing Access", "code": 50001})


async def test_guilds_are_paged_by_limit_after_and_before(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    user = fake.add_user("pat")
    ids = [str(fake.add_guild(f"Guild {i}", owner=user).id) for i in range(5)]
    fake.add_guild("Not theirs")
    token = fake.oauth.grant(user).access_token

    async def page(**query: str) -> list[str]:
        status, guilds = await api_get(http, fake, "/users/@me/guilds", token, **query)
        assert status == 200, guilds
        return [g["id"] for g in guilds]

    assert await page() == ids
    assert await page(limit="2") == ids[:2]
    assert await page(limit="2", after=ids[1]) == ids[2:4]
    assert await page(limit="2", after=ids[3]) == ids[4:]
    assert await page(limit="2", before=ids[3]) == ids[1:3]
    assert await page(after=ids[0], before=ids[4]) == ids[1:4]
    for bad in ("0", "201", "many"):
        status, body = await api_get(http, fake, "/users/@me/guilds", token, limit=bad)
        assert status == 400 and body["code"] == 50035 and "limit" in body["errors"], bad
    status, body = await api_get(http, fake, "/users/@me/guilds", token, with_counts="true")
    assert status == 200 and body[0]["approximate_member_count"] == 2
