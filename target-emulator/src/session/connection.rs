//! Framing: reads whole PDUs off a byte stream and writes them back, with digests.
//!
//! Like mini-redis's `Connection`, this owns the buffers and hands whole [`RawPdu`]s up; the
//! session never sees a partial PDU. Limits are checked before anything is allocated, so a peer
//! announcing a 16 MiB data segment cannot make us reserve it.

use crate::pdu::{BHS_LEN, Framing, FramingError, RawPdu, crc32c, padded_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

const BUFFER_LEN: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The PDU is framed correctly but its data failed the digest; the caller may reject it and
    /// carry on (RFC 7143 §7.8).
    #[error("data digest mismatch")]
    DataDigest(Box<RawPdu>),
    #[error("data segment of {0} bytes exceeds the negotiated limit of {1}")]
    DataSegmentTooLong(usize, usize),
}

impl From<FramingError> for FrameError {
    fn from(e: FramingError) -> Self {
        match e {
            FramingError::DataSegmentTooLong(len, limit) => {
                FrameError::DataSegmentTooLong(len, limit)
            }
            FramingError::HeaderDigest => FrameError::HeaderDigest,
            FramingError::DataDigest(pdu) => FrameError::DataDigest(pdu),
        }
    }
}

pub struct Connection<R, W> {
    reader: BufReader<R>,
    writer: BufWriter<W>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment we accept (our MaxRecvDataSegmentLength, or a login-phase cap).
    pub max_recv_data: usize,
    scratch: Vec<u8>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Connection<R, W> {
    pub fn new(read: R, write: W) -> Self {
        Self {
            reader: BufReader::with_capacity(BUFFER_LEN, read),
            writer: BufWriter::with_capacity(BUFFER_LEN, write),
            header_digest: false,
            data_digest: false,
            max_recv_data: 64 * 1024,
            scratch: Vec::with_capacity(BHS_LEN + 1024),
        }
    }

    /// True when no more received bytes are waiting in the buffer: the moment to flush
    /// responses, so pipelined commands share one write.
    pub fn input_drained(&self) -> bool {
        self.reader.buffer().is_empty()
    }

    /// Reads one whole PDU. The layout and the checks are [`Framing`]'s, shared with the pure
    /// [`crate::pdu::frame`] that the fuzz targets drive; this only moves the bytes.
    pub async fn read_pdu(&mut self) -> Result<RawPdu, FrameError> {
        let mut bhs = [0u8; BHS_LEN];
        match self.reader.read_exact(&mut bhs).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::Closed);
            }
            Err(e) => return Err(e.into()),
        }
        let framing = Framing::of(&bhs, self.header_digest, self.data_digest);
        framing.check_limit(self.max_recv_data)?;
        let mut rest = vec![0u8; framing.header_rest_len()];
        self.reader.read_exact(&mut rest).await?;
        let ahs = framing.header(&bhs, rest)?;
        let mut data = vec![0u8; framing.data_wire_len()];
        self.reader.read_exact(&mut data).await?;
        Ok(framing.pdu(bhs, ahs, data)?)
    }

    /// Queues a PDU for sending; call [`Connection::flush`] to push it out.
    pub async fn write_pdu(&mut self, pdu: &RawPdu) -> std::io::Result<()> {
        self.write_with_data(pdu, &pdu.data).await
    }

    /// Queues `header` (whose own data segment is ignored) followed by `data` as its data
    /// segment: Data-In from a large read buffer goes out without being copied into a PDU.
    pub async fn write_with_data(&mut self, header: &RawPdu, data: &[u8]) -> std::io::Result<()> {
        self.scratch.clear();
        let mut h = header.clone_header();
        let len = data.len() as u32;
        h.bhs[5] = (len >> 16) as u8;
        h.bhs[6] = (len >> 8) as u8;
        h.bhs[7] = len as u8;
        h.write_header(&mut self.scratch, self.header_digest);
        self.writer.write_all(&self.scratch).await?;
        if data.is_empty() {
            return Ok(());
        }
        self.writer.write_all(data).await?;
        let pad = padded_len(data.len()) - data.len();
        self.writer.write_all(&[0u8; 3][..pad]).await?;
        if self.data_digest {
            let sum = crc32c::crc32c_append(crc32c(data), &[0u8; 3][..pad]);
            self.writer.write_all(&sum.to_le_bytes()).await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().await
    }
}

impl RawPdu {
    /// The header segments only (BHS + AHS), without the data.
    pub fn clone_header(&self) -> RawPdu {
        RawPdu {
            bhs: self.bhs,
            ahs: self.ahs.clone(),
            data: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{NopOut, Request};

    #[tokio::test]
    async fn round_trips_with_digests_over_a_pipe() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let mut tx = Connection::new(ar, aw);
        let mut rx = Connection::new(br, bw);
        for c in [&mut tx, &mut rx] {
            c.header_digest = true;
            c.data_digest = true;
        }
        let nop = NopOut {
            itt: 5,
            data: b"hello".to_vec(),
            ..Default::default()
        };
        tx.write_pdu(&nop.to_raw()).await.unwrap();
        tx.flush().await.unwrap();
        let got = rx.read_pdu().await.unwrap();
        assert_eq!(Request::from_raw(&got).unwrap(), Request::NopOut(nop));
    }

    #[tokio::test]
    async fn oversized_data_segment_is_refused_before_allocation() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (_ar, mut aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let mut rx = Connection::new(br, bw);
        let mut bhs = [0u8; BHS_LEN];
        bhs[5] = 0xff;
        aw.write_all(&bhs).await.unwrap();
        assert!(matches!(
            rx.read_pdu().await,
            Err(FrameError::DataSegmentTooLong(..))
        ));
    }
}
