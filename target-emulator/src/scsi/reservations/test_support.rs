//! What the reservation tests share: nexuses, PERSISTENT RESERVE OUT calls and READ KEYS.

use super::super::cdb::{BlockRange, Command, ReserveOut};
use super::super::nexus::Nexus;
use super::super::sense::Failure;
use super::super::unit_attention::Attention;
use super::persistent_in::in_action;
use super::persistent_out::PARAMETER_LIST_LEN;
use super::state::Reservations;

pub fn nexus(n: u8) -> Nexus {
    Nexus::new(format!("iqn.2026-11.test:i{n}"), [0x80, 0, 0, 0, 0, n])
}

pub fn out(sa: u8, kind: u8, key: u64, sa_key: u64) -> (ReserveOut, Vec<u8>) {
    let mut p = vec![0u8; PARAMETER_LIST_LEN];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (
        ReserveOut {
            service_action: sa,
            scope: 0,
            kind,
            parameter_list_length: PARAMETER_LIST_LEN as u32,
        },
        p,
    )
}

pub fn run(
    r: &Reservations,
    n: &Nexus,
    sa: u8,
    kind: u8,
    key: u64,
    sa_key: u64,
) -> Result<Vec<(Nexus, Attention)>, Failure> {
    let (o, p) = out(sa, kind, key, sa_key);
    r.persistent_reserve_out(n, &o, &p)
}

pub fn keys(r: &Reservations) -> (u32, Vec<u64>) {
    let d = r.persistent_reserve_in(in_action::READ_KEYS, 1024).unwrap();
    let generation = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let keys = d[8..]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    (generation, keys)
}

pub const READ: Command = Command::Read(BlockRange { lba: 0, blocks: 1 });
pub const WRITE: Command = Command::Write {
    range: BlockRange { lba: 0, blocks: 1 },
    fua: false,
};
