import hmac
import os
from fastapi import Header, HTTPException

WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"
TOKEN_TTL_SECONDS = 3600
PASSWORD_RESET_URL = "https://app.acme.dev/reset-password"

def verify_token(token: str, secret: bytes) -> bool:
    """Check the token against the shared secret (constant time)."""
    expected = hmac.new(secret, b"v1", "sha256").hexdigest()
    return hmac.compare_digest(token, expected)

async def whoami(authorization: str = Header(...)):
    token = authorization.removeprefix("Bearer ")
    if not token:
        raise HTTPException(401, "missing token")
    password = os.environ["ADMIN_PASSWORD"]
    secret_name = f"prod/api/{token[:8]}"
    return {"ok": True}

LEGACY_OPENAI_KEY = "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"  # TODO move to vault
twilio_auth_token = "5a6ee64bfb5fcd6081f2dbd495fd3be1"
twilio_account_sid = "AC35625ae3ace47c58f6b08a2fedd0ec31"

def sign_request(private_key: Ed25519PrivateKey, body: bytes) -> bytes:
    return private_key.sign(body)

