"""Authlib (a third-party OAuth client) against a running Leash.

usage: authlib_client.py LEASH_URL OPERATOR_TOKEN WORKLOAD
Registers two clients through /v1/clients (one with a secret, one with an
RSA public key), then:
  1. client_credentials with client_secret_basic,
  2. client_credentials with private_key_jwt (RFC 7523, RS256, signed by
     Authlib with a key Leash never sees),
and verifies both access tokens with PyJWT from the JWKS. Exits 0 and prints
"ok" on success; exits 1 with the reason otherwise.
"""
import json
import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def register(base, operator, body):
    r = requests.post(f"{base}/v1/clients", json=body, headers={"Authorization": f"Bearer {operator}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def check(base, token, workload, scope):
    key = jwt.PyJWKClient(f"{base}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="urn:leash:any", issuer=base)
    if claims["client_id"] != workload or claims["scope"] != scope:
        raise SystemExit(f"unexpected claims {claims}")
    if jwt.get_unverified_header(token)["typ"] != "at+jwt":
        raise SystemExit("typ is not at+jwt")


def main() -> int:
    base, operator, workload = sys.argv[1:4]
    token_url = f"{base}/oauth2/token"

    # 1. client_secret_basic
    c = register(base, operator, {"workload": workload})
    s = OAuth2Session(c["client_id"], c["client_secret"], token_endpoint_auth_method="client_secret_basic", scope="tickets:read")
    tok = s.fetch_token(token_url, grant_type="client_credentials")
    check(base, tok["access_token"], workload, "tickets:read")

    # 2. private_key_jwt with an RSA key
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public_jwk.update({"kid": "authlib-key", "alg": "RS256", "use": "sig"})
    k = register(base, operator, {"workload": workload, "jwks": {"keys": [public_jwk]}, "secret": False})
    s = OAuth2Session(k["client_id"], pem, token_endpoint_auth_method=PrivateKeyJWT(token_url, headers={"kid": "authlib-key"}), scope="tickets:read")
    tok = s.fetch_token(token_url, grant_type="client_credentials")
    check(base, tok["access_token"], workload, "tickets:read")

    # a wrong secret is refused with RFC 6749 invalid_client
    bad = OAuth2Session(c["client_id"], "lshc_wrong", token_endpoint_auth_method="client_secret_basic", scope="tickets:read")
    try:
        bad.fetch_token(token_url, grant_type="client_credentials")
        raise SystemExit("a wrong secret was accepted")
    except Exception as e:  # authlib raises OAuthError
        if "invalid_client" not in str(e):
            raise SystemExit(f"wrong error for a bad secret: {e}")
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
