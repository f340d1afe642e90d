//! PERSISTENT RESERVE IN (SPC-4 §6.15): READ KEYS, READ RESERVATION, REPORT CAPABILITIES and
//! READ FULL STATUS, read from the state without changing it.

use super::super::allocation::truncate;
use super::super::sense::{Failure, Sense};
use super::state::{LU_SCOPE, Reservations};

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1).
pub(super) mod in_action {
    pub const READ_KEYS: u8 = 0;

    pub const READ_RESERVATION: u8 = 1;
    pub const REPORT_CAPABILITIES: u8 = 2;

    pub const READ_FULL_STATUS: u8 = 3;
}

impl Reservations {
    /// PERSISTENT RESERVE IN (SPC-4 §6.15): the data-in, cut to the allocation length (the
    /// length fields always describe the whole list).
    pub fn persistent_reserve_in(
        &self,
        service_action: u8,
        allocation_length: u16,
    ) -> Result<Vec<u8>, Failure> {
        let s = self.lock();
        let mut d = s.generation.to_be_bytes().to_vec();
        match service_action {
            in_action::READ_KEYS => {
                d.extend_from_slice(&((s.registrations.len() * 8) as u32).to_be_bytes());
                for r in &s.registrations {
                    d.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            in_action::READ_RESERVATION => match &s.persistent {
                None => d.extend_from_slice(&0u32.to_be_bytes()),
                Some(p) => {
                    d.extend_from_slice(&16u32.to_be_bytes());
                    // "All registrants" reservations report key 0 (SPC-4 §6.15.3.2).
                    let key = if p.kind.all_registrants() {
                        0
                    } else {
                        s.key_of(&p.holder).unwrap_or(0)
                    };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 0, 0, (LU_SCOPE << 4) | p.kind as u8, 0, 0]);
                }
            },
            in_action::REPORT_CAPABILITIES => {
                // SPC-4 §6.15.4: length 8; CRH=1 (RESERVE/RELEASE refused while a persistent
                // reservation exists); no SIP_C, ATP_C, PTPL_C; TMV=1 with ALLOW COMMANDS 1
                // (TEST UNIT READY is allowed through Write/Exclusive Access reservations).
                d = vec![0x00, 0x08, 0x10, 0x80 | (1 << 4)];
                d.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                d.push(0x01);
                d.extend_from_slice(&[0, 0]);
            }
            in_action::READ_FULL_STATUS => {
                let mut body = Vec::new();
                for r in &s.registrations {
                    let holder = s.holds(&r.nexus);
                    body.extend_from_slice(&r.key.to_be_bytes());
                    body.extend_from_slice(&[0; 4]);
                    body.push(u8::from(holder));
                    body.push(match (&s.persistent, holder) {
                        (Some(p), true) => (LU_SCOPE << 4) | p.kind as u8,
                        _ => 0,
                    });
                    body.extend_from_slice(&[0; 4]);
                    // Relative target port identifier: our one port is port 1.
                    body.extend_from_slice(&1u16.to_be_bytes());
                    let id = r.nexus.transport_id();
                    body.extend_from_slice(&(id.len() as u32).to_be_bytes());
                    body.extend(id);
                }
                d.extend_from_slice(&(body.len() as u32).to_be_bytes());
                d.extend(body);
            }
            _ => return Err(Sense::invalid_field_in_cdb(1).into()),
        }
        Ok(truncate(d, allocation_length as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::super::persistent_out::out_action;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn read_keys_keeps_its_length_when_truncated() {
        let r = Reservations::default();
        run(&r, &nexus(1), out_action::REGISTER, 0, 0, 5).unwrap();
        let d = r.persistent_reserve_in(in_action::READ_KEYS, 8).unwrap();
        assert_eq!(d, [0, 0, 0, 1, 0, 0, 0, 8]);
    }

    #[test]
    fn report_capabilities_and_full_status_layouts() {
        let r = Reservations::default();
        let caps = r
            .persistent_reserve_in(in_action::REPORT_CAPABILITIES, 64)
            .unwrap();
        assert_eq!(caps.len(), 8);
        assert_eq!(u16::from_be_bytes([caps[0], caps[1]]), 8);
        run(&r, &nexus(1), out_action::REGISTER, 0, 0, 0xabc).unwrap();
        let full = r
            .persistent_reserve_in(in_action::READ_FULL_STATUS, 4096)
            .unwrap();
        let len = u32::from_be_bytes([full[4], full[5], full[6], full[7]]) as usize;
        assert_eq!(full.len(), 8 + len);
        assert_eq!(&full[8..16], &0xabcu64.to_be_bytes());
        let id_len = u32::from_be_bytes([full[28], full[29], full[30], full[31]]) as usize;
        assert_eq!(id_len % 4, 0);
        assert_eq!(full[32], 0x45);
        assert!(
            std::str::from_utf8(&full[36..32 + id_len])
                .unwrap()
                .starts_with("iqn.2026-11.test:i1,i,0x800000000001\0")
        );
        assert!(r.persistent_reserve_in(4, 64).is_err());
    }
}
