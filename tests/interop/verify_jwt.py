"""Verify a Leash access token with PyJWT, using only the published JWKS.

usage: verify_jwt.py JWKS_URL TOKEN AUDIENCE ISSUER EXPECTED_JTI
Exits 0 and prints "verified" when the signature, typ, aud, iss, exp and the
RFC 9068 claims all check out; exits 1 with the reason otherwise.
"""
import sys

import jwt


def main() -> int:
    jwks_url, token, audience, issuer, jti = sys.argv[1:6]
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"typ is {header.get('typ')!r}, expected 'at+jwt' (RFC 9068)")
        return 1
    if header.get("alg") != "EdDSA":
        print(f"alg is {header.get('alg')!r}, expected EdDSA")
        return 1
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"rejected: {e}")
        return 1
    for claim in ("client_id", "scope", "owner", "workload"):
        if claim not in claims:
            print(f"claim {claim} missing")
            return 1
    if claims["jti"] != jti:
        print(f"jti {claims['jti']} != {jti}")
        return 1
    print(f"verified jti={claims['jti']} sub={claims['sub']} scope={claims['scope']!r} owner={claims['owner']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
