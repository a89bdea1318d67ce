#!/usr/bin/env python3
"""Verifies a mailcode access token the way a Python service would (SPEC §6), with PyJWT's stock
JWKS client (Debian: apt-get install python3-jwt), and prints the verified `sub`: the user id.

    python3 verify_token.py --issuer http://127.0.0.1:8080 --audience tickets < token.txt

The token is read from standard input, not argv, which every user of the machine can see.
Exit status 0 with the user id on stdout; 1 with the reason on stderr when PyJWT refuses it.
"""
import argparse
import sys

import jwt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issuer", required=True, help="mailcode's --public-url")
    p.add_argument("--audience", help="mailcode's --token-audience (default: the issuer)")
    p.add_argument("--jwks-url", help="default: ISSUER/.well-known/jwks.json")
    a = p.parse_args()
    issuer = a.issuer.rstrip("/")
    token = sys.stdin.read().strip()
    jwks = jwt.PyJWKClient(a.jwks_url or f"{issuer}/.well-known/jwks.json")
    try:
        # The key is the one the token's `kid` names in the published set; the algorithm is
        # pinned here, never taken from the token.
        key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            issuer=issuer,
            audience=a.audience or issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(claims["sub"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
