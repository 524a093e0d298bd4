-- RFC 9449 DPoP: the JWK thumbprint a sender-constrained token is bound to.
ALTER TABLE tokens ADD COLUMN cnf_jkt TEXT;
