//! CRC32C header and data digests (RFC 7143 §12.1, "HeaderDigest and DataDigest").

/// CRC32C (Castagnoli) of `bytes` as iSCSI uses it; the caller writes it little-endian, because
/// RFC 7143 §13.1 transmits the digest least significant byte first.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 §B.4 test vector: 32 bytes of zeros.
    #[test]
    fn rfc3720_vector_zeros() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    /// RFC 3720 §B.4 test vector: 32 bytes of 0xff.
    #[test]
    fn rfc3720_vector_ones() {
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    }
}
