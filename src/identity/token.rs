//! Bearer tokens: 256 random bits shown once, stored only as a keyed blake3 hash.
//!
//! A token is a high-entropy secret, not a password: nobody can guess one, so there is
//! nothing for a slow password hash to protect and a keyed hash (key in the catalog,
//! never on the wire) costs nanoseconds per call. A stolen catalog without the key
//! gives no usable token.

use rand::RngCore;

/// Every secret starts with this, so a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "bdt_";

/// A fresh secret: `bdt_` and 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex(&bytes))
}

/// A fresh 32-byte hashing key, for a new catalog.
pub fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// A fresh token id: `tok-` and 16 hex digits (not secret: it names the token in lists,
/// logs and the audit log).
pub fn new_id() -> String {
    format!("tok-{:016x}", rand::random::<u64>())
}

/// What the catalog stores for a secret.
pub fn hash(key: &[u8; 32], secret: &str) -> String {
    blake3::keyed_hash(key, secret.as_bytes())
        .to_hex()
        .to_string()
}

/// Whether `secret` has the shape of one of ours; anything else is refused before any
/// lookup.
pub fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The secret in an `authorization` header value: `Bearer <secret>` (scheme case-insensitive).
pub fn from_authorization(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_well_formed_distinct_and_hashed_with_the_key() {
        let a = new_secret();
        let b = new_secret();
        assert!(well_formed(&a) && well_formed(&b) && a != b);
        assert!(!well_formed("bdt_xyz") && !well_formed(&a[1..]) && !well_formed(""));
        let k1 = new_key();
        let k2 = new_key();
        assert_eq!(hash(&k1, &a), hash(&k1, &a));
        assert_ne!(hash(&k1, &a), hash(&k2, &a));
        assert_ne!(hash(&k1, &a), hash(&k1, &b));
    }

    #[test]
    fn authorization_header() {
        assert_eq!(from_authorization("Bearer abc"), Some("abc"));
        assert_eq!(from_authorization("bearer  abc "), Some("abc"));
        assert_eq!(from_authorization("Basic abc"), None);
        assert_eq!(from_authorization("abc"), None);
    }
}
