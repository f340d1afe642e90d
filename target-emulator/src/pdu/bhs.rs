//! The Basic Header Segment and the framing of a whole PDU (RFC 7143 §11.2).
//!
//! ```text
//! byte 0      .|I| opcode (6 bits)
//! byte 1      opcode-specific flags (F bit = 0x80)
//! byte 4      TotalAHSLength, in 4-byte words
//! bytes 5–7   DataSegmentLength, in bytes, before padding
//! bytes 8–15  LUN or opcode-specific
//! bytes 16–19 Initiator Task Tag
//! bytes 20–47 opcode-specific
//! ```

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// `len` rounded up to the 4-byte boundary every iSCSI segment is padded to.
pub fn padded_len(len: usize) -> usize {
    (len + 3) & !3
}

/// One PDU as framed on the wire, digests already checked and stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPdu {
    pub bhs: [u8; BHS_LEN],
    /// The additional header segments, padded, as `TotalAHSLength * 4` bytes.
    pub ahs: Vec<u8>,
    /// The data segment without its padding.
    pub data: Vec<u8>,
}

impl Default for RawPdu {
    fn default() -> Self {
        Self {
            bhs: [0; BHS_LEN],
            ahs: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl RawPdu {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }

    pub fn immediate(&self) -> bool {
        self.bhs[0] & 0x40 != 0
    }

    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    /// TotalAHSLength in bytes, as the header announces it.
    pub fn announced_ahs_len(bhs: &[u8; BHS_LEN]) -> usize {
        bhs[4] as usize * 4
    }

    /// DataSegmentLength in bytes (unpadded), as the header announces it.
    pub fn announced_data_len(bhs: &[u8; BHS_LEN]) -> usize {
        (bhs[5] as usize) << 16 | (bhs[6] as usize) << 8 | bhs[7] as usize
    }

    pub fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bhs[at], self.bhs[at + 1]])
    }

    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bhs[at],
            self.bhs[at + 1],
            self.bhs[at + 2],
            self.bhs[at + 3],
        ])
    }

    pub fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bhs[at..at + 8]);
        u64::from_be_bytes(b)
    }

    pub fn put_u16(&mut self, at: usize, v: u16) {
        self.bhs[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn put_u32(&mut self, at: usize, v: u32) {
        self.bhs[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn put_u64(&mut self, at: usize, v: u64) {
        self.bhs[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// Fills TotalAHSLength and DataSegmentLength from `ahs` and `data`. Called by every encoder
    /// last, so the lengths can never disagree with the segments.
    pub fn seal(mut self) -> Self {
        debug_assert!(self.ahs.len().is_multiple_of(4) && self.ahs.len() <= 255 * 4);
        self.bhs[4] = (self.ahs.len() / 4) as u8;
        let len = self.data.len() as u32;
        self.bhs[5] = (len >> 16) as u8;
        self.bhs[6] = (len >> 8) as u8;
        self.bhs[7] = len as u8;
        self
    }

    /// The PDU as it goes on the wire: BHS, AHS, [header digest], data, padding, [data digest].
    pub fn to_wire(&self, header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(BHS_LEN + self.ahs.len() + 8 + padded_len(self.data.len()) + 4);
        self.write_header(&mut out, header_digest);
        self.write_data(&mut out, data_digest);
        out
    }

    /// BHS + AHS + optional header digest.
    pub fn write_header(&self, out: &mut Vec<u8>, header_digest: bool) {
        let start = out.len();
        out.extend_from_slice(&self.bhs);
        out.extend_from_slice(&self.ahs);
        if header_digest {
            let d = super::digest::crc32c(&out[start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
    }

    /// Data segment + padding + optional data digest (nothing at all for an empty segment).
    pub fn write_data(&self, out: &mut Vec<u8>, data_digest: bool) {
        if self.data.is_empty() {
            return;
        }
        out.extend_from_slice(&self.data);
        let pad = padded_len(self.data.len()) - self.data.len();
        out.extend_from_slice(&[0u8; 3][..pad]);
        if data_digest {
            let mut h = crc32c::crc32c(&self.data);
            h = crc32c::crc32c_append(h, &[0u8; 3][..pad]);
            out.extend_from_slice(&h.to_le_bytes());
        }
    }
}

/// Where the parts of one PDU lie on the wire after its BHS (RFC 7143 §11.2): AHS, header
/// digest, data segment, padding, data digest. Read from the BHS's two length fields and the
/// digests in force; the same arithmetic frames a socket ([`crate::session::connection`]) and a
/// byte slice ([`frame`]), so the two cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// TotalAHSLength in bytes.
    pub ahs_len: usize,
    /// DataSegmentLength in bytes, before padding.
    pub data_len: usize,
    header_digest: bool,
    data_digest: bool,
}

/// A PDU that cannot be taken off the wire as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("data segment of {0} bytes exceeds the negotiated limit of {1}")]
    DataSegmentTooLong(usize, usize),
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The PDU is framed correctly but its data failed the digest; the receiver may reject it
    /// and carry on (RFC 7143 §7.8).
    #[error("data digest mismatch")]
    DataDigest(Box<RawPdu>),
}

impl Framing {
    pub fn of(bhs: &[u8; BHS_LEN], header_digest: bool, data_digest: bool) -> Self {
        Self {
            ahs_len: RawPdu::announced_ahs_len(bhs),
            data_len: RawPdu::announced_data_len(bhs),
            header_digest,
            data_digest,
        }
    }

    /// Refuses a data segment longer than `max_recv_data`, before anything is allocated for it.
    pub fn check_limit(&self, max_recv_data: usize) -> Result<(), FramingError> {
        if self.data_len > max_recv_data {
            return Err(FramingError::DataSegmentTooLong(
                self.data_len,
                max_recv_data,
            ));
        }
        Ok(())
    }

    /// Bytes between the BHS and the data segment: the AHS and the header digest.
    pub fn header_rest_len(&self) -> usize {
        self.ahs_len + if self.header_digest { 4 } else { 0 }
    }

    /// Bytes the data segment takes on the wire: data, padding and data digest; nothing at all
    /// for an empty segment.
    pub fn data_wire_len(&self) -> usize {
        if self.data_len == 0 {
            return 0;
        }
        padded_len(self.data_len) + if self.data_digest { 4 } else { 0 }
    }

    /// The whole PDU on the wire, BHS included.
    pub fn wire_len(&self) -> usize {
        BHS_LEN + self.header_rest_len() + self.data_wire_len()
    }

    /// Checks the header digest (CRC32C over BHS and AHS) and returns the AHS. `rest` is the
    /// [`Framing::header_rest_len`] bytes that followed `bhs`.
    pub fn header(&self, bhs: &[u8; BHS_LEN], mut rest: Vec<u8>) -> Result<Vec<u8>, FramingError> {
        if self.header_digest {
            let sum = crc32c::crc32c_append(crc32c::crc32c(bhs), &rest[..self.ahs_len]);
            if rest[self.ahs_len..] != sum.to_le_bytes() {
                return Err(FramingError::HeaderDigest);
            }
        }
        rest.truncate(self.ahs_len);
        Ok(rest)
    }

    /// Checks the data digest (CRC32C over data and padding) and strips padding and digest.
    /// `wire` is the [`Framing::data_wire_len`] bytes that followed the header.
    pub fn pdu(
        &self,
        bhs: [u8; BHS_LEN],
        ahs: Vec<u8>,
        mut wire: Vec<u8>,
    ) -> Result<RawPdu, FramingError> {
        let padded = padded_len(self.data_len);
        let digest_ok = !self.data_digest
            || self.data_len == 0
            || wire[padded..] == crc32c::crc32c(&wire[..padded]).to_le_bytes();
        wire.truncate(self.data_len);
        let pdu = RawPdu {
            bhs,
            ahs,
            data: wire,
        };
        if !digest_ok {
            return Err(FramingError::DataDigest(Box::new(pdu)));
        }
        Ok(pdu)
    }
}

/// Frames the PDU at the front of `wire`: the PDU and the bytes it took, or `None` while `wire`
/// holds less than a whole PDU. Checks happen in the order a socket reader meets them: the
/// length limit once the BHS is in, the header digest once the header is in, the data digest
/// last.
pub fn frame(
    wire: &[u8],
    header_digest: bool,
    data_digest: bool,
    max_recv_data: usize,
) -> Result<Option<(RawPdu, usize)>, FramingError> {
    let Some((bhs, after)) = wire.split_first_chunk::<BHS_LEN>() else {
        return Ok(None);
    };
    let framing = Framing::of(bhs, header_digest, data_digest);
    framing.check_limit(max_recv_data)?;
    let Some((rest, after)) = after.split_at_checked(framing.header_rest_len()) else {
        return Ok(None);
    };
    let ahs = framing.header(bhs, rest.to_vec())?;
    let Some(data) = after.get(..framing.data_wire_len()) else {
        return Ok(None);
    };
    let pdu = framing.pdu(*bhs, ahs, data.to_vec())?;
    Ok(Some((pdu, framing.wire_len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_writes_lengths() {
        let p = RawPdu {
            ahs: vec![0; 20],
            data: vec![1; 0x01_0203],
            ..Default::default()
        }
        .seal();
        assert_eq!(p.bhs[4], 5);
        assert_eq!(&p.bhs[5..8], &[1, 2, 3]);
        assert_eq!(RawPdu::announced_data_len(&p.bhs), 0x01_0203);
        assert_eq!(RawPdu::announced_ahs_len(&p.bhs), 20);
    }

    #[test]
    fn wire_pads_data_and_appends_digests() {
        let p = RawPdu {
            data: vec![7; 5],
            ..Default::default()
        }
        .seal();
        let w = p.to_wire(true, true);
        assert_eq!(w.len(), 48 + 4 + 8 + 4);
        assert_eq!(&w[52..57], &[7; 5]);
        assert_eq!(&w[57..60], &[0; 3]);
        let hd = u32::from_le_bytes([w[48], w[49], w[50], w[51]]);
        assert_eq!(hd, crc32c::crc32c(&w[..48]));
        let dd = u32::from_le_bytes([w[60], w[61], w[62], w[63]]);
        assert_eq!(dd, crc32c::crc32c(&w[52..60]));
    }
    #[test]
    fn frame_takes_back_what_to_wire_wrote() {
        let p = RawPdu {
            ahs: vec![9; 8],
            data: vec![7; 5],
            ..Default::default()
        }
        .seal();
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut w = p.to_wire(hd, dd);
            let n = w.len();
            w.extend_from_slice(&[1, 2, 3]);
            assert_eq!(frame(&w, hd, dd, 1024), Ok(Some((p.clone(), n))));
            assert_eq!(frame(&w[..n - 1], hd, dd, 1024), Ok(None), "one byte short");
        }
    }

    #[test]
    fn frame_checks_limit_then_header_then_data() {
        let p = RawPdu {
            data: vec![7; 5],
            ..Default::default()
        }
        .seal();
        let w = p.to_wire(true, true);
        assert_eq!(
            frame(&w[..BHS_LEN], true, true, 4),
            Err(FramingError::DataSegmentTooLong(5, 4))
        );
        let mut bad_header = w.clone();
        bad_header[BHS_LEN] ^= 1;
        assert_eq!(
            frame(&bad_header, true, true, 1024),
            Err(FramingError::HeaderDigest)
        );
        let mut bad_data = w.clone();
        *bad_data.last_mut().unwrap() ^= 1;
        assert_eq!(
            frame(&bad_data, true, true, 1024),
            Err(FramingError::DataDigest(Box::new(p)))
        );
    }
}
