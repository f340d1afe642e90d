//! The I_T nexus (SAM-5 §4.6.3): who a command comes from. Reservations and unit attentions are
//! both kept per nexus; it lives apart from both so neither has to import the other for it.

/// An I_T nexus (SAM-5 §4.6.3): one initiator port talking to our one target port. For iSCSI
/// the initiator port is the initiator name plus the session's ISID (RFC 7143 §4.2.7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nexus {
    pub initiator: String,
    pub isid: [u8; 6],
}

impl Nexus {
    pub fn new(initiator: impl Into<String>, isid: [u8; 6]) -> Self {
        Self {
            initiator: initiator.into(),
            isid,
        }
    }

    /// The iSCSI TransportID with the ISID, format 01b (SPC-4 §7.6.4.6): the name, ",i,0x",
    /// the ISID in hex, a NUL, padded to a multiple of 4 bytes.
    pub(super) fn transport_id(&self) -> Vec<u8> {
        let mut name = format!("{},i,0x", self.initiator);
        for b in self.isid {
            name.push_str(&format!("{b:02x}"));
        }
        let mut body = name.into_bytes();
        body.push(0);
        body.resize(body.len().div_ceil(4) * 4, 0);
        let mut id = vec![0x40 | 0x05, 0];
        id.extend_from_slice(&(body.len() as u16).to_be_bytes());
        id.extend(body);
        id
    }
}
