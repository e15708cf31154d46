"""GET /.well-known/jwks.json: the public keys, and rotation as another verifier sees it."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from bastion.auth.keys import KeyRing, thumbprint
from tests.support_auth import app_client, auth_app, create_account, token_for

PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_jwks_has_public_members_only_with_kid_alg_use(tmp_path: Path, alg: str) -> None:
    app = auth_app(tmp_path, jwt_alg=alg)
    async with app_client(app) as client:
        response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["alg"] == alg and key["use"] == "sig"
    assert key["kid"] == thumbprint(key)  # RFC 7638
    assert not PRIVATE & set(key)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_a_third_party_verifies_our_tokens_with_the_jwks(tmp_path: Path, alg: str) -> None:
    app = auth_app(tmp_path, jwt_alg=alg)
    async with app_client(app) as client:
        account = await create_account(app)
        value = token_for(app, account.id)
        jwks = (await client.get("/.well-known/jwks.json")).json()
    # PyJWT as an independent verifier, selecting the key by kid from the published set
    keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}
    header = jwt.get_unverified_header(value)
    claims = jwt.decode(
        value,
        keys[header["kid"]],
        algorithms=[alg],
        audience="bastion-api",
        issuer="https://localhost:8443",
    )
    assert claims["sub"] == str(account.id)


async def test_after_rotation_both_keys_are_published_and_new_tokens_use_the_new_one(
    tmp_path: Path,
) -> None:
    app = auth_app(tmp_path)
    async with app_client(app) as client:
        account = await create_account(app)
        old_token = token_for(app, account.id)
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        new_key = KeyRing(tmp_path / "keys").rotate()  # `bastion keys rotate`
        app.state.key_ring._next_check = 0.0  # skip the one-second reload throttle
        kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
        new_token = token_for(app, account.id)
        me_old = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"})
        me_new = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"})
    assert kids == [new_key.kid, old_kid]
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert me_old.status_code == me_new.status_code == 200
