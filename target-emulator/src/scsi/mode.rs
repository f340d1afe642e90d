//! MODE SENSE(6) and (10) (SPC-4 §6.13, §6.14): the Caching and Control pages, a block
//! descriptor, and WP in the device-specific parameter for read-only LUNs.

use super::{allocation::truncate, cdb::ModeSense, sense::Sense};
use crate::lun::Lun;

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0a;
const INFORMATIONAL_EXCEPTIONS: u8 = 0x1c;
const ALL_PAGES: u8 = 0x3f;

/// Page control values (SPC-4 §6.13.2).
const PC_CHANGEABLE: u8 = 1;
const PC_SAVED: u8 = 3;

pub fn mode_sense(lun: &dyn Lun, m: &ModeSense) -> Result<Vec<u8>, Sense> {
    if m.page_control == PC_SAVED {
        return Err(Sense::saving_parameters_not_supported());
    }
    let changeable = m.page_control == PC_CHANGEABLE;
    let mut pages = Vec::new();
    let subpage_ok = m.subpage == 0 || (m.page == ALL_PAGES && m.subpage == 0xff);
    if !subpage_ok {
        return Err(Sense::invalid_field_in_cdb(3));
    }
    match m.page {
        CACHING => pages.extend(caching(changeable)),
        CONTROL => pages.extend(control(changeable)),
        INFORMATIONAL_EXCEPTIONS => pages.extend(informational_exceptions(changeable)),
        ALL_PAGES => {
            pages.extend(caching(changeable));
            pages.extend(control(changeable));
            pages.extend(informational_exceptions(changeable));
        }
        _ => return Err(Sense::invalid_field_in_cdb(2)),
    }
    let descriptor = if m.disable_block_descriptors {
        Vec::new()
    } else {
        block_descriptor(lun, m.long_lba_accepted)
    };
    // Device-specific parameter: WP (bit 7) and DPOFUA (bit 4).
    let device_specific = if lun.reports_write_protect() { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::new();
    if m.ten_byte {
        let total = 8 + descriptor.len() + pages.len();
        d.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        d.push(0);
        d.push(device_specific);
        d.push(if descriptor.len() == 16 { 1 } else { 0 });
        d.push(0);
        d.extend_from_slice(&(descriptor.len() as u16).to_be_bytes());
    } else {
        let total = 4 + descriptor.len() + pages.len();
        d.push((total - 1).min(255) as u8);
        d.push(0);
        d.push(device_specific);
        d.push(descriptor.len() as u8);
    }
    d.extend(descriptor);
    d.extend(pages);
    Ok(truncate(d, m.allocation_length as usize))
}

fn block_descriptor(lun: &dyn Lun, long: bool) -> Vec<u8> {
    let blocks = lun.block_count();
    if long {
        let mut b = vec![0u8; 16];
        b[0..8].copy_from_slice(&blocks.to_be_bytes());
        b[12..16].copy_from_slice(&lun.block_size().to_be_bytes());
        b
    } else {
        let mut b = vec![0u8; 8];
        b[0..4].copy_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
        b[5..8].copy_from_slice(&lun.block_size().to_be_bytes()[1..4]);
        b
    }
}

/// Caching page (SBC-4 §6.5.5): write cache enabled, read cache enabled. Nothing changeable.
fn caching(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = CACHING;
    p[1] = 18;
    if !changeable {
        p[2] = 0x04; // WCE
    }
    p
}

/// Control page (SPC-4 §7.5.8): fixed-format sense (D_SENSE=0), nothing changeable.
fn control(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = CONTROL;
    p[1] = 10;
    if !changeable {
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering allowed
        p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout period: unlimited
    }
    p
}

/// Informational Exceptions Control page (SPC-4 §7.5.13): exceptions reporting disabled.
fn informational_exceptions(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = INFORMATIONAL_EXCEPTIONS;
    p[1] = 10;
    if !changeable {
        p[2] = 0x08; // DEXCPT
    }
    p
}
