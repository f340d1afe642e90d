//! Text data segments: `key=value` pairs, each NUL-terminated (RFC 7143 §6.1). Named `keys` so
//! it is not mistaken for the Text Request and Response PDUs (RFC 7143 §11.10–11.11).

use super::error::PduError;

/// Keys in the order they arrived; duplicates kept so negotiation can reject them.
pub type TextKeys = Vec<(String, String)>;

/// Longest key name RFC 7143 §6.1 allows.
const MAX_KEY_LEN: usize = 63;

/// Parses a text data segment. Trailing bytes after the last NUL (a sender that forgot the final
/// NUL) are taken as one more pair, as open-iscsi and tgt do.
pub fn parse_keys(data: &[u8]) -> Result<TextKeys, PduError> {
    let mut keys = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(item).map_err(|_| PduError::BadText("not UTF-8"))?;
        let (k, v) = text
            .split_once('=')
            .ok_or(PduError::BadText("a pair has no '='"))?;
        if k.is_empty() || k.len() > MAX_KEY_LEN {
            return Err(PduError::BadText(
                "key name is empty or longer than 63 bytes",
            ));
        }
        keys.push((k.to_string(), v.to_string()));
    }
    Ok(keys)
}

/// Encodes pairs as `key=value\0` each.
pub fn encode_keys<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_ref().as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_pairs_and_missing_final_nul() {
        let k = parse_keys(b"InitiatorName=iqn.x\0SessionType=Normal").unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[1], ("SessionType".into(), "Normal".into()));
    }

    #[test]
    fn rejects_pair_without_equals() {
        assert!(parse_keys(b"garbage\0").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::vec(("[A-Za-z][A-Za-z0-9_.]{0,20}", "[ -~&&[^=]]{0,40}"), 0..8)) {
            let enc = encode_keys(&pairs);
            let dec = parse_keys(&enc).unwrap();
            prop_assert_eq!(dec, pairs);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_keys(&bytes);
        }
    }
}
