use leash_client::Client;

#[test]
fn rejects_a_mistyped_token() {
    // Checksum deliberately wrong: must be rejected offline.
    let bad = "lsh_U6sXyQBRM1XK4A0ACeQoj0oLaMkzsTFz1dHIL0";
    assert!(Client::parse_token(bad).is_err());
}

#[test]
fn accepts_the_staging_token() {
    let good = "lsh_Z1Sq4Vdi0E2dwEoSwnEuGBIrHmjaeTR71NsUZV";
    assert!(Client::parse_token(good).is_ok());
}

const JWT_NONE: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
const FIXTURE_HASH: &str = "eb5e73c4f3e029b356d0f39c148694fe9a7a2bd0";

