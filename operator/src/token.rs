//! Runner tokens: made by the driver that starts a run, kept only as their SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// SHA-256 of a runner token (what is stored; the token itself never is).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The hash as hex (as a session's status keeps it in Kubernetes mode).
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(token_hash(token))
}

/// A new runner token: random, with the prefix that marks runner tokens.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{}{}",
        model::runner_env::RUNNER_TOKEN_PREFIX,
        hex::encode(bytes)
    )
}
