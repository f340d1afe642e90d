//! Pack objects: a few MiB of compressed frames, each frame one extent of
//! consecutive changed tracking blocks.
//!
//! Layout of `packs/<first 2 hex>/<pack id>.pack` (all integers little-endian):
//! ```text
//! "BDPACK01"                                   8 bytes, once
//! frame*: "BDFR" codec:u8 0:u8*3 len:u32 stored_len:u32 frame_hash:32  (48 bytes)
//!         stored bytes                         stored_len bytes
//! ```
//! A pack is assembled in memory and put whole, durably, before any index may name
//! it, so an index never points at missing data. A pack never changes once put.
//! Encoding and decoding here are pure: the repository does the I/O.

use super::RepoError;
use super::codec::{Codec, MAX_FRAME_LEN};
use super::hash::frame_hash;

pub const PACK_MAGIC: &[u8; 8] = b"BDPACK01";
pub const FRAME_MAGIC: &[u8; 4] = b"BDFR";
pub const FRAME_HEADER_LEN: u64 = 48;
/// Packs are closed once they pass their target size (the store's, see
/// `ObjectStore::pack_target_len`): large enough for sequential I/O and few objects,
/// small enough that garbage collection frees space in useful steps.
pub const LOCAL_PACK_TARGET_LEN: u64 = 4 << 20;

/// A pack's name: 16 random bytes, shown as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    pub fn random() -> PackId {
        PackId(rand::random())
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<PackId> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(PackId(out))
    }
}

/// Where a frame lives and what it must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLocation {
    pub pack: PackId,
    /// Offset of the frame header in the pack.
    pub offset: u64,
    /// Stored (compressed) length, without the header.
    pub stored_len: u32,
    /// `frame_hash` of the uncompressed frame.
    pub hash: [u8; 32],
}

impl FrameLocation {
    pub fn describe(&self) -> String {
        format!("pack {}@{}", self.pack.to_hex(), self.offset)
    }
}

/// A frame ready to be appended: compressed by a worker, written by the writer.
#[derive(Debug)]
pub struct EncodedFrame {
    pub codec: Codec,
    pub len: u32,
    pub hash: [u8; 32],
    pub data: Vec<u8>,
}

impl EncodedFrame {
    /// Hashes and compresses `raw`; keeps it uncompressed when the codec does not
    /// make it smaller, so random data costs its own size plus the header.
    #[cfg(test)]
    pub fn encode(raw: &[u8], codec: Codec) -> Result<EncodedFrame, RepoError> {
        EncodedFrame::encode_hashed(raw, codec, frame_hash(raw))
    }

    /// As `encode`, with the frame hash already known (from the blocks'
    /// fingerprints, which a backup computes anyway).
    pub fn encode_hashed(
        raw: &[u8],
        codec: Codec,
        hash: [u8; 32],
    ) -> Result<EncodedFrame, RepoError> {
        let mut data = codec.compress(raw)?;
        let mut used = codec;
        if data.len() >= raw.len() {
            data = raw.to_vec();
            used = Codec::None;
        }
        Ok(EncodedFrame {
            codec: used,
            len: raw.len() as u32,
            hash,
            data,
        })
    }
}

/// The pack's key in the repository: `packs/<first 2 hex>/<id>.pack`.
pub fn pack_key(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{hex}.pack", &hex[..2])
}

/// Aligned for O_DIRECT (the largest logical block size in use): the local store
/// writes a pack's buffer without copying it.
const DIRECT_ALIGN: usize = 4096;
/// A pack's bytes never exceed its target plus this: it is closed once past the target,
/// and the frame that passes it is at most a header and `MAX_FRAME_LEN` (stored
/// uncompressed when compressing does not help).
const PACK_SLACK: usize = FRAME_HEADER_LEN as usize + MAX_FRAME_LEN + DIRECT_ALIGN;

/// One pack being assembled in memory. Nothing touches the repository until the
/// backup writer puts it whole (see `writer`): a pack never changes once stored.
pub struct PackBuilder {
    id: PackId,
    target_len: u64,
    /// Allocated once at the target plus `PACK_SLACK` and the alignment and never
    /// grown, so `buf[start..]` stays aligned.
    buf: Vec<u8>,
    start: usize,
}

impl PackBuilder {
    /// A pack to be closed once it passes `target_len` bytes.
    pub fn new(target_len: u64) -> PackBuilder {
        let mut buf: Vec<u8> = Vec::with_capacity(target_len as usize + PACK_SLACK + DIRECT_ALIGN);
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        buf.resize(start, 0);
        buf.extend_from_slice(PACK_MAGIC);
        PackBuilder {
            id: PackId::random(),
            target_len,
            buf,
            start,
        }
    }

    /// Whether the pack has reached its target size and should be stored.
    pub fn is_full(&self) -> bool {
        self.len() >= self.target_len
    }

    /// The pack's bytes, from its magic, without a copy (still aligned).
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.buf).slice(self.start..)
    }

    pub fn id(&self) -> PackId {
        self.id
    }

    pub fn len(&self) -> u64 {
        (self.buf.len() - self.start) as u64
    }

    /// The pack's bytes, from its magic.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn append(&mut self, frame: &EncodedFrame) -> Result<FrameLocation, RepoError> {
        let offset = self.len();
        let needed = FRAME_HEADER_LEN as usize + frame.data.len();
        if self.buf.len() + needed > self.target_len as usize + PACK_SLACK + self.start {
            // A caller that appends past the target without closing the pack.
            return Err(RepoError::corrupt(
                "pack being written",
                format!("frame of {needed} bytes does not fit"),
            ));
        }
        let mut header = [0u8; FRAME_HEADER_LEN as usize];
        header[..4].copy_from_slice(FRAME_MAGIC);
        header[4] = frame.codec as u8;
        header[8..12].copy_from_slice(&frame.len.to_le_bytes());
        header[12..16].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
        header[16..48].copy_from_slice(&frame.hash);
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(&frame.data);
        Ok(FrameLocation {
            pack: self.id,
            offset,
            stored_len: frame.data.len() as u32,
            hash: frame.hash,
        })
    }
}

/// Bytes to read for a frame: its header and stored data.
pub fn frame_span(loc: &FrameLocation) -> std::ops::Range<u64> {
    loc.offset..loc.offset + FRAME_HEADER_LEN + loc.stored_len as u64
}

/// Checks a frame's stored bytes (header and data, as `frame_span` reads them) against
/// the index's location, decompresses and verifies blake3. Any mismatch is `Corrupt`
/// naming `object` (the pack's key and the offset).
pub fn decode_frame(buf: &[u8], loc: &FrameLocation, object: &str) -> Result<Vec<u8>, RepoError> {
    if loc.stored_len as usize > MAX_FRAME_LEN + 1024 {
        return Err(RepoError::corrupt(object, "stored length too large"));
    }
    if buf.len() as u64 != FRAME_HEADER_LEN + loc.stored_len as u64 {
        return Err(RepoError::corrupt(
            object,
            "pack is shorter than the index says",
        ));
    }
    let (header, data) = buf.split_at(FRAME_HEADER_LEN as usize);
    if &header[..4] != FRAME_MAGIC {
        return Err(RepoError::corrupt(object, "bad frame magic"));
    }
    let codec = Codec::from_byte(header[4])
        .ok_or_else(|| RepoError::corrupt(object, format!("unknown codec byte {}", header[4])))?;
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if stored != loc.stored_len {
        return Err(RepoError::corrupt(
            object,
            "frame length differs from the index",
        ));
    }
    if header[16..48] != loc.hash {
        return Err(RepoError::corrupt(
            object,
            "frame hash differs from the index",
        ));
    }
    let raw = codec.decompress(data, len, object)?;
    if frame_hash(&raw) != loc.hash {
        return Err(RepoError::corrupt(object, "blake3 mismatch"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_flipped_byte_is_named() {
        let mut pack = PackBuilder::new(LOCAL_PACK_TARGET_LEN);
        let raw: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let loc = pack
            .append(&EncodedFrame::encode(&raw, Codec::Zstd).unwrap())
            .unwrap();
        let loc2 = pack
            .append(&EncodedFrame::encode(&raw[..4096], Codec::Bz2).unwrap())
            .unwrap();
        let bytes = pack.bytes().to_vec();
        let span = |l: &FrameLocation| {
            let r = frame_span(l);
            bytes[r.start as usize..r.end as usize].to_vec()
        };
        assert_eq!(decode_frame(&span(&loc), &loc, "p").unwrap(), raw);
        assert_eq!(decode_frame(&span(&loc2), &loc2, "p").unwrap(), raw[..4096]);
        let mut bad = span(&loc);
        bad[FRAME_HEADER_LEN as usize + 3] ^= 0x40;
        let err = decode_frame(&bad, &loc, "pack X@8")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pack X@8"), "{err}");
        let short = &span(&loc)[..40];
        assert!(decode_frame(short, &loc, "p").is_err());
    }

    #[test]
    fn pack_id_hex_round_trips() {
        let id = PackId::random();
        assert_eq!(PackId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(PackId::from_hex("zz"), None);
        assert!(pack_key(&id).starts_with(&format!("packs/{}/", &id.to_hex()[..2])));
    }
}
