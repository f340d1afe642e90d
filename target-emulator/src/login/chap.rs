//! CHAP with MD5 (RFC 1994, as RFC 7143 §12.1.3 uses it): challenge, response check, and the
//! target's own response for mutual CHAP.

use md5::{Digest, Md5};

/// The CHAP_A algorithm number for MD5.
pub const ALGORITHM_MD5: &str = "5";

/// Credentials: a user name and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: String,
}

/// One challenge the target issued.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: u8,
    pub challenge: Vec<u8>,
}

impl Challenge {
    pub fn random() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut challenge = vec![0u8; 16];
        rng.fill(&mut challenge[..]);
        Self {
            id: rng.random(),
            challenge,
        }
    }
}

/// MD5(id || secret || challenge), the CHAP response value.
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Encodes binary as RFC 7143 §6.1 hex-constant: `0x` + hex digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a binary value: `0x`/`0X` hex or `0b`/`0B` base64 (RFC 7143 §6.1 binary-value).
pub fn decode_binary(value: &str) -> Option<Vec<u8>> {
    let (prefix, body) = value.split_at_checked(2)?;
    match prefix {
        "0x" | "0X" => {
            // Only ASCII hex digits: the byte slicing below must never split a character, and
            // `from_str_radix` would take a leading '+'.
            if !body.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let body = if body.len() % 2 == 1 {
                format!("0{body}")
            } else {
                body.to_string()
            };
            (0..body.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&body[i..i + 2], 16).ok())
                .collect()
        }
        "0b" | "0B" => decode_base64(body),
        _ => None,
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MD5(0x00 || "abc") = 7a3949eab1a4b3609fb05f2699ebeb8f (computed with Python's hashlib).
    #[test]
    fn md5_known_answer() {
        let r = response(0, b"abc", b"");
        assert_eq!(encode_hex(&r), "0x7a3949eab1a4b3609fb05f2699ebeb8f");
    }

    #[test]
    fn hex_and_base64_decode() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![10, 11]));
        assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("zz"), None);
        assert_eq!(decode_binary("0xzz"), None);
    }

    /// Found by the `login` fuzz target: a multi-byte character in a hex value used to panic
    /// on a byte slice through it. CHAP_R and CHAP_C come from the initiator.
    #[test]
    fn hex_with_non_ascii_or_sign_is_refused() {
        assert_eq!(decode_binary("0xC32C\u{52a}one"), None);
        assert_eq!(decode_binary("0x\u{3bc}"), None);
        assert_eq!(decode_binary("0x+a"), None);
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
    }
}
