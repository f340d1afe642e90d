//! `scan --stream`: the changed extents as one framed byte stream on stdout, for a
//! vendor's pipeline. Pure encoding and decoding, little-endian:
//!
//! ```text
//! stream   header extent* end
//! header   "BDSTREAM" version:u32 (1) block_size:u32 medium_bytes:u64
//! extent   "EXT1" offset:u64 length:u64 bytes[length] blake3(bytes)[32]
//! end      "END1" extents:u64 bytes:u64 blake3(header, then each extent's offset,
//!          length and blake3)[32]
//! ```
//! Offsets and lengths are in bytes of the medium. An extent's bytes are checked on
//! their own by its blake3, and the whole stream (header, offsets, lengths) by the end
//! frame, so a truncated stream or a damaged frame is detected, never taken for a
//! shorter change set.

pub const MAGIC: &[u8; 8] = b"BDSTREAM";
const VERSION: u32 = 1;
const EXTENT: &[u8; 4] = b"EXT1";
const END: &[u8; 4] = b"END1";
pub const HEADER_LEN: usize = 24;
pub const EXTENT_HEAD_LEN: usize = 20;

pub fn header(block_size: u32, medium_bytes: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&block_size.to_le_bytes());
    out.extend_from_slice(&medium_bytes.to_le_bytes());
    out
}

/// The head of an extent frame; its bytes and then their blake3 follow.
pub fn extent_head(offset: u64, length: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXTENT_HEAD_LEN);
    out.extend_from_slice(EXTENT);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out
}

/// One extent as the end frame sums it: offset, length, blake3 of its bytes.
pub type ExtentSum = (u64, u64, [u8; 32]);

/// The end frame of a stream that began with `header` and held `extents`.
pub fn end(header: &[u8], extents: &[ExtentSum]) -> Vec<u8> {
    let mut all = blake3::Hasher::new();
    all.update(header);
    let mut bytes = 0u64;
    for (offset, length, hash) in extents {
        all.update(&offset.to_le_bytes());
        all.update(&length.to_le_bytes());
        all.update(hash);
        bytes += length;
    }
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(END);
    out.extend_from_slice(&(extents.len() as u64).to_le_bytes());
    out.extend_from_slice(&bytes.to_le_bytes());
    out.extend_from_slice(all.finalize().as_bytes());
    out
}

/// A decoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub block_size: u32,
    pub medium_bytes: u64,
    /// (offset, bytes) of each extent.
    pub extents: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not a blockdelta scan stream (or an unknown version)")]
    NotAStream,
    #[error("the stream ends inside a frame")]
    Truncated,
    #[error("unknown frame at byte {0}")]
    UnknownFrame(usize),
    #[error("extent at offset {0}: blake3 mismatch")]
    ExtentChecksum(u64),
    #[error("the end frame does not match the extents before it")]
    EndMismatch,
    #[error("bytes after the end frame")]
    TrailingBytes,
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, StreamError> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or(StreamError::Truncated)
}

/// Decodes a whole stream, checking every checksum.
pub fn decode(b: &[u8]) -> Result<Decoded, StreamError> {
    if b.len() < HEADER_LEN || &b[..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return Err(StreamError::NotAStream);
    }
    let block_size = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
    let medium_bytes = u64_at(b, 16)?;
    let mut at = HEADER_LEN;
    let mut extents = Vec::new();
    let mut sums = Vec::new();
    loop {
        let tag = b.get(at..at + 4).ok_or(StreamError::Truncated)?;
        if tag == EXTENT {
            let offset = u64_at(b, at + 4)?;
            let len = u64_at(b, at + 12)?;
            let start = at + EXTENT_HEAD_LEN;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| start.checked_add(l))
                .ok_or(StreamError::Truncated)?;
            let data = b.get(start..end).ok_or(StreamError::Truncated)?;
            let sum = b.get(end..end + 32).ok_or(StreamError::Truncated)?;
            let hash = blake3::hash(data);
            if hash.as_bytes()[..] != sum[..] {
                return Err(StreamError::ExtentChecksum(offset));
            }
            sums.push((offset, len, *hash.as_bytes()));
            extents.push((offset, data.to_vec()));
            at = end + 32;
        } else if tag == END {
            let frame = b.get(at..at + 52).ok_or(StreamError::Truncated)?;
            if frame != end(&b[..HEADER_LEN], &sums) {
                return Err(StreamError::EndMismatch);
            }
            if b.len() != at + 52 {
                return Err(StreamError::TrailingBytes);
            }
            return Ok(Decoded {
                block_size,
                medium_bytes,
                extents,
            });
        } else {
            return Err(StreamError::UnknownFrame(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(d: &Decoded) -> Vec<u8> {
        let head = header(d.block_size, d.medium_bytes);
        let mut out = head.clone();
        let mut sums = Vec::new();
        for (offset, data) in &d.extents {
            out.extend(extent_head(*offset, data.len() as u64));
            out.extend_from_slice(data);
            let h = *blake3::hash(data).as_bytes();
            out.extend_from_slice(&h);
            sums.push((*offset, data.len() as u64, h));
        }
        out.extend(end(&head, &sums));
        out
    }

    fn stream() -> impl Strategy<Value = Decoded> {
        (
            any::<bool>(),
            any::<u64>(),
            proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..6,
            ),
        )
            .prop_map(|(big, medium_bytes, extents)| Decoded {
                block_size: if big { 4096 } else { 512 },
                medium_bytes,
                extents,
            })
    }

    proptest! {
        #[test]
        fn streams_round_trip(d in stream()) {
            prop_assert_eq!(decode(&encode(&d)).unwrap(), d);
        }

        #[test]
        fn any_damage_or_cut_is_detected(d in stream(), at in any::<prop::sample::Index>(), flip in 1u8..=255, cut: bool) {
            let mut bytes = encode(&d);
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] ^= flip;
            }
            prop_assert!(decode(&bytes).is_err());
        }
    }
}
