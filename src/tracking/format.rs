//! The dirty-bitmap file of a managed volume, `<volume file>.dirty`: pure encoding and
//! decoding, no I/O.
//!
//! ```text
//! "BDDIRTY1"
//! state:u8        0 clean: the bitmap holds every block written so far
//!                 1 in use: blocks may have been written since (a crash leaves this)
//! body_len:u64
//! body            base_len:u16 base (the backup the bits are counted from; empty: none)
//!                 mtime_s:i64 mtime_ns:u32 (the volume file's mtime after our last write)
//!                 bitmap (RoaringTreemap portable serialization, 4 KiB blocks)
//! blake3(body)    32 bytes
//! ```
//! The state byte sits outside the checksummed body so that marking the file in use
//! is one byte written in place (one sector: it lands whole or not at all); the clean
//! state is only ever written with a whole new file, renamed over the old one.

use roaring::RoaringTreemap;

const MAGIC: &[u8; 8] = b"BDDIRTY1";
/// Where the state byte is, for the in-place "in use" mark.
pub const STATE_OFFSET: u64 = 8;
const HEADER_LEN: usize = 17;

/// Whether the bitmap can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    Clean = 0,
    InUse = 1,
}

impl FileState {
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// What a dirty-bitmap file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct DirtyFile {
    pub state: FileState,
    /// The backup the bits count from: blocks written since it. `None`: no backup yet
    /// (or tracking was reset), so the bits vouch for nothing.
    pub base: Option<String>,
    /// The volume file's modification time after the last write we know of: another
    /// time means it was written behind the target's back.
    pub mtime: (i64, u32),
    pub bits: RoaringTreemap,
}

/// Why a dirty-bitmap file cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a dirty-bitmap file")]
    NotDirtyFile,
    #[error("unknown state byte {0}")]
    State(u8),
    #[error("truncated")]
    Truncated,
    #[error("blake3 mismatch")]
    Checksum,
    #[error("bad bitmap: {0}")]
    Bitmap(String),
}

impl DirtyFile {
    pub fn encode(&self) -> Vec<u8> {
        let base = self.base.as_deref().unwrap_or("");
        let mut body = Vec::with_capacity(2 + base.len() + self.bits.serialized_size());
        body.extend_from_slice(&(base.len() as u16).to_le_bytes());
        body.extend_from_slice(base.as_bytes());
        body.extend_from_slice(&self.mtime.0.to_le_bytes());
        body.extend_from_slice(&self.mtime.1.to_le_bytes());
        self.bits
            .serialize_into(&mut body)
            .expect("writing to a Vec cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 32);
        out.extend_from_slice(MAGIC);
        out.push(self.state.byte());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(blake3::hash(&body).as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<DirtyFile, FormatError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(FormatError::NotDirtyFile);
        }
        let state = match bytes[8] {
            0 => FileState::Clean,
            1 => FileState::InUse,
            other => return Err(FormatError::State(other)),
        };
        let body_len = u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes"));
        let rest = &bytes[HEADER_LEN..];
        if (rest.len() as u64) != body_len.saturating_add(32) {
            return Err(FormatError::Truncated);
        }
        let (body, sum) = rest.split_at(body_len as usize);
        if blake3::hash(body).as_bytes() != sum {
            return Err(FormatError::Checksum);
        }
        if body.len() < 2 {
            return Err(FormatError::Truncated);
        }
        let base_len = u16::from_le_bytes([body[0], body[1]]) as usize;
        let base = body.get(2..2 + base_len).ok_or(FormatError::Truncated)?;
        let base = String::from_utf8(base.to_vec()).map_err(|_| FormatError::NotDirtyFile)?;
        let rest = &body[2 + base_len..];
        if rest.len() < 12 {
            return Err(FormatError::Truncated);
        }
        let mtime = (
            i64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
            u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes")),
        );
        let bits = RoaringTreemap::deserialize_from(&rest[12..])
            .map_err(|e| FormatError::Bitmap(e.to_string()))?;
        Ok(DirtyFile {
            state,
            base: (!base.is_empty()).then_some(base),
            mtime,
            bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file() -> impl Strategy<Value = DirtyFile> {
        (
            any::<bool>(),
            proptest::option::of("bkp-[0-9a-f]{16}"),
            any::<(i64, u32)>(),
            proptest::collection::vec(0u64..(1 << 34), 0..200),
        )
            .prop_map(|(clean, base, mtime, bits)| DirtyFile {
                state: if clean {
                    FileState::Clean
                } else {
                    FileState::InUse
                },
                base,
                mtime,
                bits: bits.into_iter().collect(),
            })
    }

    proptest! {
        #[test]
        fn encoding_round_trips(f in file()) {
            prop_assert_eq!(DirtyFile::decode(&f.encode()).unwrap(), f);
        }

        #[test]
        fn a_damaged_body_or_length_is_refused(f in file(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = f.encode();
            let i = STATE_OFFSET as usize + 1 + at.index(bytes.len() - STATE_OFFSET as usize - 1);
            bytes[i] ^= flip;
            prop_assert!(DirtyFile::decode(&bytes).is_err());
        }

        #[test]
        fn the_state_byte_alone_marks_it_in_use(f in file()) {
            let mut bytes = f.encode();
            bytes[STATE_OFFSET as usize] = FileState::InUse.byte();
            let decoded = DirtyFile::decode(&bytes).unwrap();
            prop_assert_eq!(decoded.state, FileState::InUse);
            prop_assert_eq!(decoded.bits, f.bits);
        }
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(
            DirtyFile::decode(b"hello").unwrap_err(),
            FormatError::NotDirtyFile
        );
        let mut bytes = DirtyFile {
            state: FileState::Clean,
            base: None,
            mtime: (0, 0),
            bits: RoaringTreemap::new(),
        }
        .encode();
        bytes[STATE_OFFSET as usize] = 7;
        assert_eq!(
            DirtyFile::decode(&bytes).unwrap_err(),
            FormatError::State(7)
        );
        bytes.pop();
        assert!(DirtyFile::decode(&bytes).is_err());
    }
}
