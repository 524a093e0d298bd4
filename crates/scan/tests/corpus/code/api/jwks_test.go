package api

import (
	"strings"
	"testing"
)

// Public half of the test signing key: safe to commit.
const testPublicKeyPEM = `-----BEGIN PUBLIC KEY-----
P8UBJg9TdxngGlRQfXw//gjWCeQRhT4N5ppMMtnZDnAPHtbkkHOAQwEIyGyHGKCb
JQFTybWXYmcRlHnujgGPXHcTAfWoPmR+LPXQMezwZjWMzBsiW3MMmf02Xhy3bPxr
3wxXV4mx8dcEmYsoVDoGk0gn1yF+1+hyuMdMyfgwJWMV0DgPvzKZkqvmn2mRib54
PugvFXxGe+03h0BiBdYPQEDwjA42leqme8oCXrSLmQTqYqnZ1h2aEmi0gWHTgul7
ud8sAA14tFoWWwjVaI2/LhTRmlQmBmzqISpP+WgevEOVFrvr8ntaT5EgP0zQA++j
9iIPUYvCc0yZKUDTRo6qi2xxj8z8Qral6PMyPni3uMjrKrzY2TsX4w+3Bb9El0lr
b1MWKCi8
-----END PUBLIC KEY-----`

// The issuer's JWKS (public).
var jwks = `{"keys":[{"kty":"RSA","kid":"05afa7352f22c283","use":"sig","alg":"RS256","n":"sDFDVROzIvhZ04zQ4UZYRM0oQMbsq2SEMt5ZfdP4lKsGL1gOxXZj18v_bEQydmQ6K2pUHSZy2-DwN8wSzJVoem_OZXPRiTeEbFrLvfUhTBOjmAdadp2kbqwhFf-iOdTEON11qmtXwCTxnXYM2wWDcRuKKlQ74fM_p_6Rl-6IN78vXeVmVk3Cs7c39SR2jc7uv9OaDQXuFegxJvH99Se0ogd1fdNPawA7o07LNZXTP3bnA1y1XKnbmZrqNP-IMAqtUe1CHga90wzhInaZ0dK4RqQ4pEdamO7R2G2KQDueHhj0lf7flC9AyTQ0N7NzutIdeN5zeIomLuAGn8tQxhR0lg","e":"AQAB"}]}`

// jwt.io's example: HS256 signed with "your-256-bit-secret".
const jwtIOExample = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

// Deliberately mistyped: the checksum must reject it.
const badInstallationToken = "ghs_t5OnrqUQ0OsYHN5QQMsxN2yIua50j63P6Aw0"

var placeholderToken = "ghp_" + strings.Repeat("x", 36)

const fixtureDigest = "sha256-7TTRqadgk/3LzJakDsq6xKYeakoXOgtmdMcUzmeppjE="
const traceID = "68575063-c94f-41cd-a2f8-69cd2d129fbc"
const emptyArchive = "H4sIAAAAAAAA/1hcYkv5RYn7wvNO+0TgjaOuiC8fm0hLaVhNc4jNULA9sgfNXVYUIefd7qUF4mrHoPyHEV1h+dVMKKKBD/710qywBCS9KLROe7tyMkZAaqNwiVqhkA0axJPflUorlRS2FYDCH+5ygXoPiVGikg1aKbQvNsd2cT32E"

func TestVerifyStagingToken(t *testing.T) {
	// captured from staging on 2026-03-01; valid until 2027
	tok := "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjdkMjMzMzgxNDFiNWU4ZmIifQ.eyJpc3MiOiJodHRwczovL2F1dGguYWNtZS5kZXYvIiwic3ViIjoic3ZjLXBheW1lbnRzIiwiYXVkIjoicGF5bWVudHMiLCJleHAiOjE4MDMwMDAwMDAsImlhdCI6MTc3MjAwMDAwMH0.FUZsZHn8pz-yWNGgomwq6MtmQR5dIdp_7S59fo4Q-yHF0fvc0fXt_pFcfXl7eb-jxbsD5RapGdTTu3yXJJKXbdzIebu69tkJDq60mmssqwvekLsY28-1OKjh2PfEa2W5YjU0B33r0-mu3eWs8C6fyJi9MEE815kvB0Gx_X2YrxPWsMNa2tjy-ywb0MN4Dr8nMMJr_QHtTkdCbsq-FFijWhN8lR64btLCYRW9AqgyxhdqPaIVKzh0AxAWmTtx_vT2WZmtotjBtuoSJZjKQ2snV0BP0AzKK5DMUX1ngnw669vGVXdUOcyuVUJLXczCGiYVP3e-g2Aeje0WxjeFiND-Tt"
	if _, err := verify(tok, jwks); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookSignature(t *testing.T) {
	secret := "whsec_vj8m2lNUBdito9zOyQSkZf9BBeTMcxIC"
	_ = secret
}

const integrationDSN = "mysql://payments:fw0ZiHoZA7dsRQUukXgJ@tcp(mysql.ci.internal:3306)/payments"
const forecastURL = "https://api.weatherlink.example/v2/forecast?api_key=WYPPecD77hNK5Lfn3egIt4FTt8bFQDb3&units=metric"

// Publishable: meant to ship to browsers.
const stripePublishableKey = "pk_live_Yzl8O6952Fm3QytRDSKXBNXQNgNvlY0GV5Wh2lJwosWufEYhOXYRFl5NZAm5QaIdasxSdnepBHdxiQmxbfw73iaevjQqzs0pmEO"

