//! The two hashes of the repository, both blake3: a tracking block's fingerprint
//! (what incrementals compare and indexes keep) and a frame's hash (what a frame is
//! verified by). One home, so the pack and index formats share them without
//! importing each other.

use super::TRACKING_BLOCK_SIZE;

/// The fingerprint of one tracking block.
pub fn fingerprint(block: &[u8]) -> [u8; 16] {
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&blake3::hash(block).as_bytes()[..16]);
    fp
}

/// What a frame is verified by: blake3 over the fingerprints of its 4 KiB
/// blocks. A backup has those fingerprints already, so storing a frame costs no
/// second hashing pass over its bytes; a reader recomputes them in one pass.
pub fn frame_hash(raw: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for block in raw.chunks(TRACKING_BLOCK_SIZE as usize) {
        h.update(&fingerprint(block));
    }
    *h.finalize().as_bytes()
}

/// `frame_hash` from the blocks' fingerprints, in block order.
pub fn frame_hash_of<'a>(fingerprints: impl Iterator<Item = &'a [u8; 16]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for fp in fingerprints {
        h.update(fp);
    }
    *h.finalize().as_bytes()
}
