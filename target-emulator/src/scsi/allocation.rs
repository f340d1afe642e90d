//! The allocation length of a data-in command (SPC-4 §4.2.5.6): the initiator's buffer size.
//! Every handler builds its whole answer, length fields describing all of it, then cuts it
//! here, so no handler can disagree with another about what a short buffer receives.

/// `data` cut to at most `alloc` bytes.
pub(crate) fn truncate(mut data: Vec<u8>, alloc: usize) -> Vec<u8> {
    data.truncate(alloc);
    data
}
