// Verify a Leash access token with Node `jose`, using only the published JWKS.
// usage: node verify_jose.mjs JWKS_URL TOKEN AUDIENCE ISSUER
// Prints "verified …" and exits 0, or prints the reason and exits 1.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, token, audience, issuer] = process.argv.slice(2);
try {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: "at+jwt",
    algorithms: ["EdDSA"],
    requiredClaims: ["exp", "iat", "jti", "sub", "client_id", "scope"],
  });
  console.log(`verified kid=${protectedHeader.kid} jti=${payload.jti} scope=${payload.scope}${payload.act ? " act=" + JSON.stringify(payload.act) : ""}`);
} catch (e) {
  console.log(`rejected: ${e.code ?? ""} ${e.message}`);
  process.exit(1);
}
