// A DPoP proof made by Node `jose` (RFC 9449): Leash binds the token to the
// key (cnf.jkt = RFC 7638 thumbprint) and refuses the same proof replayed.
// usage: node dpop_jose.mjs TOKEN_URL CLIENT_ID CLIENT_SECRET
// Prints the bound access token and exits 0, or prints the reason and exits 1.
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from "jose";

const [tokenUrl, id, secret] = process.argv.slice(2);
const fail = (why) => { console.log(`failed: ${why}`); process.exit(1); };
const { publicKey, privateKey } = await generateKeyPair("ES256");
const jwk = await exportJWK(publicKey);
const proof = await new SignJWT({ htm: "POST", htu: tokenUrl, jti: crypto.randomUUID() })
  .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk })
  .setIssuedAt()
  .sign(privateKey);
const request = (p) => fetch(tokenUrl, {
  method: "POST",
  headers: {
    authorization: "Basic " + Buffer.from(`${id}:${secret}`).toString("base64"),
    "content-type": "application/x-www-form-urlencoded",
    dpop: p,
  },
  body: new URLSearchParams({ grant_type: "client_credentials", scope: "tickets:read" }),
});
let r = await request(proof);
const tok = await r.json();
if (r.status !== 200) fail(`token request answered ${r.status}: ${JSON.stringify(tok)}`);
if (tok.token_type !== "DPoP") fail(`token_type is ${tok.token_type}`);
const jkt = await calculateJwkThumbprint(jwk);
if (decodeJwt(tok.access_token).cnf?.jkt !== jkt) fail("cnf.jkt is not the key's thumbprint");
r = await request(proof);
const replay = await r.json();
if (r.status !== 400 || replay.error !== "invalid_dpop_proof") fail(`a replayed proof got ${r.status} ${JSON.stringify(replay)}`);
console.log(tok.access_token);
