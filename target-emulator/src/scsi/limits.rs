//! The limits the target advertises in the Block Limits VPD page (SBC-4 §6.6.4) and enforces
//! on every command; one value per target, passed to each handler that checks a length.

/// Limits the target advertises in VPD 0xB0 and enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest READ/WRITE, in bytes.
    pub max_transfer_bytes: u32,
    /// Largest UNMAP descriptor; libiscsi holds an explicit limit above 1 Mi blocks "insane".
    pub max_unmap_blocks: u32,
    pub max_unmap_descriptors: u32,
    /// Largest WRITE SAME: what the 16-bit count of WRITE SAME(10) can say.
    pub max_write_same_blocks: u32,
    /// Largest COMPARE AND WRITE, in blocks: what its one-byte count can say.
    pub max_compare_and_write_blocks: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_transfer_bytes: 8 << 20,
            max_unmap_blocks: 1 << 20,
            max_unmap_descriptors: 256,
            max_write_same_blocks: 0xffff,
            max_compare_and_write_blocks: 255,
        }
    }
}
