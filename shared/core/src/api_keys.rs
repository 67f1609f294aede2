//! API keys: the secret's shape, how a new key is made, how a presented secret is hashed, and
//! the rule for key names.
//!
//! A secret is `sluice_` followed by 64 lower-case hex digits (32 random bytes). The recognisable
//! prefix lets secret scanners and people spot a leaked key, and lets the API refuse a token of
//! another shape (a Prefect Cloud `pnu_` key, a typo) without a store read.
//!
//! Only the SHA-256 of the whole secret is stored. A fast, unsalted hash is right here, unlike
//! for passwords: a password is guessable, so its hash must be slow and salted to make trying
//! candidates expensive; a secret of 256 random bits cannot be guessed at any speed, so there is
//! nothing for a slow hash or a salt to protect, and the hash must stay cheap because it runs on
//! every request. Being unsalted is also what lets the store find a key by the hash of the
//! presented secret, with a unique index, in one read.
//!
//! No secret is ever compared with another: a presented secret is hashed and the hash looked up.
//! What such a lookup's timing could reveal is the stored hash, and a hash does not help an
//! attacker produce a secret that hashes to it, so no constant-time comparison is needed.

use std::fmt::Write as _;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::{ApiKey, Id, Timestamp};

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "sluice_";
/// Random bytes in a secret: 256 bits, beyond any guessing.
pub const SECRET_BYTES: usize = 32;
/// How many characters of the secret are kept in [`ApiKey::prefix`]: the marker and 8 hex
/// digits, enough to tell a handful of keys apart while keeping 224 bits unknown.
pub const DISPLAY_PREFIX_LEN: usize = SECRET_PREFIX.len() + 8;
/// The longest key name.
pub const MAX_NAME_LEN: usize = 100;

/// A key just made: what to store, and the secret to show its owner once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub key: ApiKey,
    /// Never stored; whoever loses it makes a new key.
    pub secret: String,
}

/// Why a key name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("API key name must not be empty")]
    Empty,
    #[error("API key name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "API key name {0:?} may only contain ASCII letters, digits, '-', '_' and '.', and must start with a letter or digit"
    )]
    BadCharacter(String),
}

/// Key names are typed on command lines and printed in tables, so they are kept to a plain,
/// shell-safe alphabet that needs no quoting.
pub fn validate_key_name(name: &str) -> Result<(), KeyNameError> {
    let Some(first) = name.chars().next() else {
        return Err(KeyNameError::Empty);
    };
    if name.len() > MAX_NAME_LEN {
        return Err(KeyNameError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !first.is_ascii_alphanumeric() || !name.chars().all(allowed) {
        return Err(KeyNameError::BadCharacter(name.to_owned()));
    }
    Ok(())
}

/// A new key with a fresh secret from the thread-local generator, which is a CSPRNG seeded by
/// the operating system. Drawing here rather than taking bytes from the caller keeps the one
/// security-relevant choice (where the randomness comes from) in one place, as the run-name
/// generator does for its less critical randomness; [`new_api_key_from_bytes`] is the pure part.
pub fn generate_api_key(id: Id, name: &str, created: Timestamp) -> NewApiKey {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    new_api_key_from_bytes(id, name, created, &bytes)
}

/// A new key whose secret encodes `random`, which must come from a cryptographically secure
/// source (tests pass fixed bytes).
pub fn new_api_key_from_bytes(
    id: Id,
    name: &str,
    created: Timestamp,
    random: &[u8; SECRET_BYTES],
) -> NewApiKey {
    let mut secret = String::with_capacity(SECRET_PREFIX.len() + 2 * SECRET_BYTES);
    secret.push_str(SECRET_PREFIX);
    push_hex(&mut secret, random);
    let key = ApiKey {
        id,
        created,
        name: name.to_owned(),
        hash: hash_secret(&secret),
        prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
    };
    NewApiKey { key, secret }
}

/// Lower-case hex SHA-256 of the whole secret, as stored in [`ApiKey::hash`].
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(2 * digest.len());
    push_hex(&mut out, &digest);
    out
}

/// Whether `token` has the shape of a secret this module makes. Anything else cannot be a key,
/// so it is refused without looking it up.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(SECRET_PREFIX).is_some_and(|hex| {
        hex.len() == 2 * SECRET_BYTES
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid instant")
    }

    #[test]
    fn hashes_are_lower_case_hex_sha256() {
        // The SHA-256 test vector for "abc" (FIPS 180-2).
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_key_from_bytes_is_deterministic_and_consistent() {
        let id = Id::nil();
        let made = new_api_key_from_bytes(id, "ci", t0(), &[0xab; SECRET_BYTES]);
        assert_eq!(made.secret, format!("sluice_{}", "ab".repeat(32)));
        assert_eq!(made.key.hash, hash_secret(&made.secret));
        assert_eq!(made.key.prefix, "sluice_abababab");
        assert_eq!(made.key.name, "ci");
        assert_eq!(made.key.created, t0());
        assert!(is_well_formed(&made.secret));
        assert!(made.secret.starts_with(&made.key.prefix));
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_api_key(Id::nil(), "a", t0());
        let b = generate_api_key(Id::nil(), "b", t0());
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.key.hash, b.key.hash);
        assert!(is_well_formed(&a.secret), "{}", a.secret);
    }

    #[test]
    fn only_the_secret_shape_is_well_formed() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_well_formed(&format!("sluice_{hex}")));
        for bad in [
            String::new(),
            "sluice_".to_owned(),
            hex.clone(),
            format!("pnu_{hex}"),
            format!("sluice_{}", &hex[1..]),
            format!("sluice_{hex}0"),
            format!("sluice_{}", hex.to_uppercase()),
            format!("sluice_{}g", &hex[1..]),
            format!("Sluice_{hex}"),
        ] {
            assert!(!is_well_formed(&bad), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        for ok in [
            "ci",
            "deploy-bot",
            "lambda_1",
            "team.data",
            "9",
            &"a".repeat(100),
        ] {
            assert_eq!(validate_key_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_key_name(""), Err(KeyNameError::Empty));
        assert_eq!(
            validate_key_name(&"a".repeat(101)),
            Err(KeyNameError::TooLong)
        );
        for bad in ["-x", ".x", "a b", "a/b", "ünï", "a\n", "a$b", "_x"] {
            assert!(
                matches!(validate_key_name(bad), Err(KeyNameError::BadCharacter(_))),
                "{bad}"
            );
        }
    }
}
