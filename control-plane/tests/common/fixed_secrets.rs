//! Fixed secrets in place of the environment, for the API tests and the benchmarks (both
//! include this file): they need a working server, not protected data.

use secrecy::SecretString;

/// The value of secret `name`: a pepper, the signing secret and the edge secret, each 32
/// repeated bytes.
pub fn secrets_env(name: &str) -> Option<SecretString> {
    use base64::Engine as _;
    let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    match name {
        "KEYPLANE_PEPPERS" => Some(SecretString::from(format!("1:{}", b64(1)))),
        "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(b64(2))),
        "KEYPLANE_EDGE_SECRET" => Some(SecretString::from(b64(3))),
        _ => None,
    }
}
