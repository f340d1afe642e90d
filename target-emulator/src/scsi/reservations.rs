//! Reservations: who may use a logical unit. Persistent reservations (SPC-4 §5.13, PERSISTENT
//! RESERVE IN §6.15 and OUT §6.16) and the older RESERVE(6)/RELEASE(6) (SPC-2 §5.5.1).
//!
//! One [`Reservations`] belongs to each exported logical unit and is shared by every session on
//! it (the target keeps it with the export); every command names its I_T nexus ([`Nexus`]).
//! Registrations survive the loss of their nexus but not a restart of the target: nothing here
//! is written anywhere (REPORT CAPABILITIES says PTPL_C=0 and APTPL=1 is refused). This module
//! must never do I/O; it only decides, and keeps the state behind a mutex.
//!
//! PERSISTENT RESERVE OUT says which nexuses must hear about what it did (unit attentions);
//! the caller establishes those conditions.
//!
//! Not implemented: REGISTER AND MOVE, REPLACE LOST RESERVATION, SPEC_I_PT and ALL_TG_PT
//! (refused as invalid fields).

use super::cdb::{Command, ReserveOut};
use super::sense::{Failure, Sense};
use super::truncate;
use super::unit_attention::Attention;
use std::sync::{Mutex, MutexGuard};

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
    fn transport_id(&self) -> Vec<u8> {
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

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2).
mod out_action {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 6;
}

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1).
mod in_action {
    pub const READ_KEYS: u8 = 0;
    pub const READ_RESERVATION: u8 = 1;
    pub const REPORT_CAPABILITIES: u8 = 2;
    pub const READ_FULL_STATUS: u8 = 3;
}

/// The only scope SPC-4 still defines: the whole logical unit.
const LU_SCOPE: u8 = 0;
/// PERSISTENT RESERVE OUT basic parameter list (SPC-4 §6.16.3).
pub const PARAMETER_LIST_LEN: usize = 24;
/// Longest parameter list we take in before looking at it: room for SPEC_I_PT lists, which
/// are refused once read.
pub const MAX_PARAMETER_LIST_LEN: u32 = 4096;

/// Persistent reservation types (SPC-4 §6.15.3.4, table 169).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WriteExclusive = 1,
    ExclusiveAccess = 3,
    WriteExclusiveRegistrantsOnly = 5,
    ExclusiveAccessRegistrantsOnly = 6,
    WriteExclusiveAllRegistrants = 7,
    ExclusiveAccessAllRegistrants = 8,
}

impl Kind {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Kind::WriteExclusive,
            3 => Kind::ExclusiveAccess,
            5 => Kind::WriteExclusiveRegistrantsOnly,
            6 => Kind::ExclusiveAccessRegistrantsOnly,
            7 => Kind::WriteExclusiveAllRegistrants,
            8 => Kind::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }
    /// Every registrant holds an "all registrants" reservation.
    fn all_registrants(self) -> bool {
        matches!(
            self,
            Kind::WriteExclusiveAllRegistrants | Kind::ExclusiveAccessAllRegistrants
        )
    }
    /// Registrants that are not the holder still get full access.
    fn registrants_share(self) -> bool {
        !matches!(self, Kind::WriteExclusive | Kind::ExclusiveAccess)
    }
    /// Reads are refused to those without access too (the Exclusive Access family).
    fn excludes_reads(self) -> bool {
        matches!(
            self,
            Kind::ExclusiveAccess
                | Kind::ExclusiveAccessRegistrantsOnly
                | Kind::ExclusiveAccessAllRegistrants
        )
    }
}

/// What a command does to the medium, for the access rules (SPC-4 §5.13.1 table 63, SBC-4
/// §4.18 table 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Allowed whatever is reserved: identification, capacity, sense, unit readiness.
    Unrestricted,
    /// Reads the medium: refused to non-holders under Exclusive Access reservations.
    Read,
    /// Changes the medium or its cache: refused to non-holders under any reservation.
    Write,
    /// PERSISTENT RESERVE IN/OUT: allowed, they apply their own rules.
    Persistent,
    /// RESERVE(6)/RELEASE(6).
    Legacy,
}

fn access(command: &Command) -> Access {
    match command {
        Command::TestUnitReady
        | Command::RequestSense { .. }
        | Command::Inquiry { .. }
        | Command::ReadCapacity10
        | Command::ReadCapacity16 { .. }
        | Command::ReportLuns { .. }
        | Command::ReportSupportedOpcodes(_) => Access::Unrestricted,
        Command::ModeSense(_)
        | Command::Read(_)
        | Command::Verify { .. }
        | Command::PreFetch(_)
        | Command::GetLbaStatus(_)
        | Command::ReadDefectData(_) => Access::Read,
        Command::Write { .. }
        | Command::WriteAndVerify { .. }
        | Command::CompareAndWrite { .. }
        | Command::OrWrite { .. }
        | Command::WriteSame(_)
        | Command::Unmap { .. }
        | Command::SynchronizeCache(_) => Access::Write,
        Command::PersistentReserveIn { .. } | Command::PersistentReserveOut(_) => {
            Access::Persistent
        }
        Command::Reserve | Command::Release => Access::Legacy,
    }
}

#[derive(Debug, Clone)]
struct Registration {
    nexus: Nexus,
    key: u64,
}

#[derive(Debug, Clone)]
struct Persistent {
    /// The reserving nexus; for "all registrants" types every registrant holds it.
    holder: Nexus,
    kind: Kind,
}

#[derive(Debug, Default)]
struct State {
    /// PRGENERATION: bumped by every PERSISTENT RESERVE OUT that changes registrations.
    generation: u32,
    /// In registration order, which READ KEYS reports.
    registrations: Vec<Registration>,
    persistent: Option<Persistent>,
    /// The holder of a RESERVE(6) reservation.
    legacy: Option<Nexus>,
}

impl State {
    fn key_of(&self, nexus: &Nexus) -> Option<u64> {
        self.registrations
            .iter()
            .find(|r| &r.nexus == nexus)
            .map(|r| r.key)
    }

    fn holds(&self, nexus: &Nexus) -> bool {
        match &self.persistent {
            Some(p) if p.kind.all_registrants() => self.key_of(nexus).is_some(),
            Some(p) => &p.holder == nexus,
            None => false,
        }
    }

    /// Whether `nexus` may use the medium freely under the persistent reservation.
    fn has_access(&self, nexus: &Nexus) -> bool {
        match &self.persistent {
            None => true,
            Some(p) => {
                self.holds(nexus) || (p.kind.registrants_share() && self.key_of(nexus).is_some())
            }
        }
    }

    /// Removes the registration of `nexus` and, with it, whatever reservation it held alone
    /// (SPC-4 §5.13.11.2.3). Releasing a registrants-only reservation this way tells the other
    /// registrants.
    fn unregister(&mut self, nexus: &Nexus) -> Vec<(Nexus, Attention)> {
        let was_holder = self.holds(nexus);
        self.registrations.retain(|r| &r.nexus != nexus);
        let mut told = Vec::new();
        if let Some(p) = &self.persistent {
            let release = if p.kind.all_registrants() {
                self.registrations.is_empty()
            } else {
                was_holder
            };
            if release {
                if p.kind.registrants_share() {
                    told = self.others(nexus, Attention::ReservationsReleased);
                }
                self.persistent = None;
            }
        }
        told
    }

    /// `attention` for every registrant but `except`.
    fn others(&self, except: &Nexus, attention: Attention) -> Vec<(Nexus, Attention)> {
        self.registrations
            .iter()
            .filter(|r| &r.nexus != except)
            .map(|r| (r.nexus.clone(), attention))
            .collect()
    }

    /// Removes every registration with `key` except that of `keep`; the nexuses removed.
    fn remove_key(&mut self, key: u64, keep: &Nexus) -> Vec<Nexus> {
        let removed: Vec<Nexus> = self
            .registrations
            .iter()
            .filter(|r| r.key == key && &r.nexus != keep)
            .map(|r| r.nexus.clone())
            .collect();
        self.registrations
            .retain(|r| r.key != key || &r.nexus == keep);
        if let Some(p) = &self.persistent {
            let gone = if p.kind.all_registrants() {
                self.registrations.is_empty()
            } else {
                !self.registrations.iter().any(|r| r.nexus == p.holder)
            };
            if gone {
                self.persistent = None;
            }
        }
        removed
    }
}

/// The reservation state of one logical unit; see the module documentation.
#[derive(Debug, Default)]
pub struct Reservations {
    state: Mutex<State>,
}

/// The decoded PERSISTENT RESERVE OUT parameter list.
struct Parameters {
    key: u64,
    service_action_key: u64,
}

impl Reservations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The I_T nexus is lost (its last session ended): its RESERVE(6) reservation goes
    /// (SPC-2 §5.5.1); registrations stay.
    pub fn nexus_lost(&self, nexus: &Nexus) {
        let mut s = self.lock();
        if s.legacy.as_ref() == Some(nexus) {
            s.legacy = None;
        }
    }

    /// A logical unit or target reset: RESERVE(6) reservations go, persistent ones stay
    /// (SAM-5 §6.3.3, SPC-4 §5.13.1).
    pub fn reset(&self) {
        self.lock().legacy = None;
    }

    /// Whether `nexus` may run `command` now; RESERVATION CONFLICT if not. Runs before any
    /// data moves.
    pub fn check(&self, nexus: &Nexus, command: &Command) -> Result<(), Failure> {
        let s = self.lock();
        let class = access(command);
        if s.persistent.is_some() {
            let allowed = match class {
                Access::Unrestricted | Access::Persistent => true,
                // SPC-4 §5.13.3: no RESERVE/RELEASE while a persistent reservation exists.
                Access::Legacy => false,
                Access::Read => {
                    s.has_access(nexus)
                        || s.persistent
                            .as_ref()
                            .is_some_and(|p| !p.kind.excludes_reads())
                }
                Access::Write => s.has_access(nexus),
            };
            return if allowed {
                Ok(())
            } else {
                Err(Failure::ReservationConflict)
            };
        }
        match &s.legacy {
            Some(holder) if holder != nexus => {
                // SPC-2 §5.5.1: only commands that report state or drop nothing get through;
                // RELEASE from a non-holder succeeds and does nothing.
                let exempt = matches!(
                    command,
                    Command::Inquiry { .. }
                        | Command::ReportLuns { .. }
                        | Command::RequestSense { .. }
                        | Command::ReportSupportedOpcodes(_)
                        | Command::Release
                );
                if exempt {
                    Ok(())
                } else {
                    Err(Failure::ReservationConflict)
                }
            }
            _ => Ok(()),
        }
    }

    /// RESERVE(6): reserve the whole unit for `nexus` (again, if it already holds it).
    pub fn reserve(&self, nexus: &Nexus) -> Result<(), Failure> {
        let mut s = self.lock();
        if s.persistent.is_some() {
            return Err(Failure::ReservationConflict);
        }
        match &s.legacy {
            Some(holder) if holder != nexus => Err(Failure::ReservationConflict),
            _ => {
                s.legacy = Some(nexus.clone());
                Ok(())
            }
        }
    }

    /// RELEASE(6): drop the reservation if `nexus` holds it; otherwise nothing happens.
    pub fn release(&self, nexus: &Nexus) -> Result<(), Failure> {
        let mut s = self.lock();
        if s.persistent.is_some() {
            return Err(Failure::ReservationConflict);
        }
        if s.legacy.as_ref() == Some(nexus) {
            s.legacy = None;
        }
        Ok(())
    }

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

    /// Checks a PERSISTENT RESERVE OUT CDB before its parameter list is fetched.
    pub fn check_out(out: &ReserveOut) -> Result<usize, Failure> {
        if out.service_action > out_action::REGISTER_AND_IGNORE_EXISTING_KEY {
            // REGISTER AND MOVE and REPLACE LOST RESERVATION are not supported.
            return Err(Sense::invalid_field_in_cdb(1).into());
        }
        let length = out.parameter_list_length;
        if length < PARAMETER_LIST_LEN as u32 || length > MAX_PARAMETER_LIST_LEN {
            return Err(Sense::parameter_list_length_error().into());
        }
        Ok(length as usize)
    }

    /// PERSISTENT RESERVE OUT (SPC-4 §6.16, §5.13.7–5.13.11) from `nexus`. Returns the unit
    /// attention conditions to establish.
    pub fn persistent_reserve_out(
        &self,
        nexus: &Nexus,
        out: &ReserveOut,
        params: &[u8],
    ) -> Result<Vec<(Nexus, Attention)>, Failure> {
        let p = parse_parameters(out, params)?;
        let mut s = self.lock();
        let registered = s.key_of(nexus);
        match out.service_action {
            out_action::REGISTER | out_action::REGISTER_AND_IGNORE_EXISTING_KEY => {
                let ignore = out.service_action == out_action::REGISTER_AND_IGNORE_EXISTING_KEY;
                match registered {
                    None => {
                        if !ignore && p.key != 0 {
                            return Err(Failure::ReservationConflict);
                        }
                        if p.service_action_key != 0 {
                            s.registrations.push(Registration {
                                nexus: nexus.clone(),
                                key: p.service_action_key,
                            });
                            s.generation = s.generation.wrapping_add(1);
                        }
                        Ok(Vec::new())
                    }
                    Some(key) => {
                        if !ignore && p.key != key {
                            return Err(Failure::ReservationConflict);
                        }
                        let told = if p.service_action_key == 0 {
                            s.unregister(nexus)
                        } else {
                            for r in s.registrations.iter_mut().filter(|r| &r.nexus == nexus) {
                                r.key = p.service_action_key;
                            }
                            Vec::new()
                        };
                        s.generation = s.generation.wrapping_add(1);
                        Ok(told)
                    }
                }
            }
            action => {
                // Everything else needs a registered nexus naming its own key.
                if registered != Some(p.key) {
                    return Err(Failure::ReservationConflict);
                }
                match action {
                    out_action::RESERVE => {
                        let kind = kind_and_scope(out)?;
                        match &s.persistent {
                            None => {
                                s.persistent = Some(Persistent {
                                    holder: nexus.clone(),
                                    kind,
                                });
                                Ok(Vec::new())
                            }
                            Some(existing) if existing.kind == kind && s.holds(nexus) => {
                                Ok(Vec::new())
                            }
                            Some(_) => Err(Failure::ReservationConflict),
                        }
                    }
                    out_action::RELEASE => {
                        let Some(existing) = &s.persistent else {
                            return Ok(Vec::new());
                        };
                        if !s.holds(nexus) {
                            return Ok(Vec::new());
                        }
                        if out.scope != LU_SCOPE || Kind::from_code(out.kind) != Some(existing.kind)
                        {
                            return Err(Sense::invalid_release_of_persistent_reservation().into());
                        }
                        // SPC-4 §5.13.11.2.2: releasing a reservation others shared tells them.
                        let told = if existing.kind.registrants_share() {
                            s.others(nexus, Attention::ReservationsReleased)
                        } else {
                            Vec::new()
                        };
                        s.persistent = None;
                        Ok(told)
                    }
                    out_action::CLEAR => {
                        let told = s.others(nexus, Attention::ReservationsPreempted);
                        s.registrations.clear();
                        s.persistent = None;
                        s.generation = s.generation.wrapping_add(1);
                        Ok(told)
                    }
                    // PREEMPT AND ABORT also aborts the preempted nexuses' tasks; a command
                    // here runs to completion before the next starts, so none are pending.
                    out_action::PREEMPT | out_action::PREEMPT_AND_ABORT => {
                        preempt(&mut s, nexus, out, &p)
                    }
                    _ => Err(Sense::invalid_field_in_cdb(1).into()),
                }
            }
        }
    }
}

/// PREEMPT (SPC-4 §5.13.11.4): remove the registrations with the service action key, and if
/// they held the reservation, take it over with the type in the CDB. The preempted nexuses
/// hear REGISTRATIONS PREEMPTED; other registrants hear RESERVATIONS RELEASED when the
/// reservation changed hands.
fn preempt(
    s: &mut State,
    nexus: &Nexus,
    out: &ReserveOut,
    p: &Parameters,
) -> Result<Vec<(Nexus, Attention)>, Failure> {
    let target = p.service_action_key;
    let (removed, took_over) = match s.persistent.clone() {
        Some(existing) if existing.kind.all_registrants() && target == 0 => {
            let kind = kind_and_scope(out)?;
            let removed = s
                .registrations
                .iter()
                .filter(|r| &r.nexus != nexus)
                .map(|r| r.nexus.clone())
                .collect();
            s.registrations.retain(|r| &r.nexus == nexus);
            s.persistent = Some(Persistent {
                holder: nexus.clone(),
                kind,
            });
            (removed, true)
        }
        Some(existing)
            if !existing.kind.all_registrants() && s.key_of(&existing.holder) == Some(target) =>
        {
            let kind = kind_and_scope(out)?;
            let removed = s.remove_key(target, nexus);
            s.persistent = Some(Persistent {
                holder: nexus.clone(),
                kind,
            });
            (removed, existing.kind != kind || existing.holder != *nexus)
        }
        _ => {
            if target == 0 {
                return Err(Sense::invalid_field_in_parameter_list(8).into());
            }
            let removed = s.remove_key(target, nexus);
            if removed.is_empty() {
                return Err(Failure::ReservationConflict);
            }
            (removed, false)
        }
    };
    s.generation = s.generation.wrapping_add(1);
    let mut told: Vec<(Nexus, Attention)> = removed
        .into_iter()
        .map(|n| (n, Attention::RegistrationsPreempted))
        .collect();
    if took_over {
        told.extend(s.others(nexus, Attention::ReservationsReleased));
    }
    Ok(told)
}

fn kind_and_scope(out: &ReserveOut) -> Result<Kind, Failure> {
    if out.scope != LU_SCOPE {
        return Err(Sense::invalid_field_in_cdb(2).into());
    }
    Kind::from_code(out.kind).ok_or_else(|| Sense::invalid_field_in_cdb(2).into())
}

/// The basic parameter list (SPC-4 §6.16.3): reservation key, service action reservation key,
/// and the SPEC_I_PT / ALL_TG_PT / APTPL bits in byte 20, none of which we support.
fn parse_parameters(out: &ReserveOut, params: &[u8]) -> Result<Parameters, Failure> {
    if params.len() < PARAMETER_LIST_LEN {
        return Err(Sense::parameter_list_length_error().into());
    }
    let mut key = [0u8; 8];
    key.copy_from_slice(&params[0..8]);
    let mut sa_key = [0u8; 8];
    sa_key.copy_from_slice(&params[8..16]);
    let flags = params[20];
    let registering = matches!(
        out.service_action,
        out_action::REGISTER | out_action::REGISTER_AND_IGNORE_EXISTING_KEY
    );
    if registering && flags & 0x08 != 0 {
        return Err(Sense::invalid_field_in_parameter_list(20).into());
    }
    if registering && flags & 0x04 != 0 {
        return Err(Sense::invalid_field_in_parameter_list(20).into());
    }
    if flags & 0x01 != 0 {
        // APTPL: we cannot keep registrations through a power loss (PTPL_C=0).
        return Err(Sense::invalid_field_in_parameter_list(20).into());
    }
    if params.len() != PARAMETER_LIST_LEN {
        return Err(Sense::parameter_list_length_error().into());
    }
    Ok(Parameters {
        key: u64::from_be_bytes(key),
        service_action_key: u64::from_be_bytes(sa_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::cdb::BlockRange;

    fn nexus(n: u8) -> Nexus {
        Nexus::new(format!("iqn.2026-11.test:i{n}"), [0x80, 0, 0, 0, 0, n])
    }

    fn out(sa: u8, kind: u8, key: u64, sa_key: u64) -> (ReserveOut, Vec<u8>) {
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

    fn run(
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

    fn keys(r: &Reservations) -> (u32, Vec<u64>) {
        let d = r.persistent_reserve_in(in_action::READ_KEYS, 1024).unwrap();
        let generation = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let keys = d[8..]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        (generation, keys)
    }

    const READ: Command = Command::Read(BlockRange { lba: 0, blocks: 1 });
    const WRITE: Command = Command::Write {
        range: BlockRange { lba: 0, blocks: 1 },
        fua: false,
    };

    #[test]
    fn register_reregister_and_unregister() {
        let r = Reservations::new();
        let a = nexus(1);
        run(
            &r,
            &a,
            out_action::REGISTER_AND_IGNORE_EXISTING_KEY,
            0,
            0,
            7,
        )
        .unwrap();
        assert_eq!(keys(&r), (1, vec![7]));
        // REGISTER from a registered nexus must name its current key.
        assert_eq!(
            run(&r, &a, out_action::REGISTER, 0, 0, 8),
            Err(Failure::ReservationConflict)
        );
        run(&r, &a, out_action::REGISTER, 0, 7, 0).unwrap();
        assert_eq!(keys(&r), (2, vec![]));
        // An unregistered nexus registering key 0 changes nothing, not even the generation.
        run(&r, &a, out_action::REGISTER, 0, 0, 0).unwrap();
        assert_eq!(keys(&r).0, 2);
    }

    #[test]
    fn read_keys_keeps_its_length_when_truncated() {
        let r = Reservations::new();
        run(&r, &nexus(1), out_action::REGISTER, 0, 0, 5).unwrap();
        let d = r.persistent_reserve_in(in_action::READ_KEYS, 8).unwrap();
        assert_eq!(d, [0, 0, 0, 1, 0, 0, 0, 8]);
    }

    /// The access matrix libiscsi's ProutReserve.Access* tests check: (registered non-holder
    /// read, write; unregistered read, write).
    #[test]
    fn access_by_reservation_type() {
        let table = [
            (3, [false, false, false, false]),
            (1, [true, false, true, false]),
            (6, [true, true, false, false]),
            (5, [true, true, true, false]),
            (8, [true, true, false, false]),
            (7, [true, true, true, false]),
        ];
        for (kind, want) in table {
            let r = Reservations::new();
            let (holder, other, stranger) = (nexus(1), nexus(2), nexus(3));
            run(&r, &holder, out_action::REGISTER, 0, 0, 1).unwrap();
            run(&r, &other, out_action::REGISTER, 0, 0, 2).unwrap();
            run(&r, &holder, out_action::RESERVE, kind, 1, 0).unwrap();
            assert!(r.check(&holder, &READ).is_ok() && r.check(&holder, &WRITE).is_ok());
            let got = [
                r.check(&other, &READ).is_ok(),
                r.check(&other, &WRITE).is_ok(),
                r.check(&stranger, &READ).is_ok(),
                r.check(&stranger, &WRITE).is_ok(),
            ];
            assert_eq!(got, want, "type {kind}");
            assert!(r.check(&stranger, &Command::TestUnitReady).is_ok());
        }
    }

    #[test]
    fn holder_unregistering_releases_unless_all_registrants() {
        let r = Reservations::new();
        let (a, b) = (nexus(1), nexus(2));
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &b, out_action::REGISTER, 0, 0, 2).unwrap();
        run(&r, &a, out_action::RESERVE, 3, 1, 0).unwrap();
        run(&r, &a, out_action::REGISTER, 0, 1, 0).unwrap();
        let d = r
            .persistent_reserve_in(in_action::READ_RESERVATION, 64)
            .unwrap();
        assert_eq!(&d[4..8], &[0, 0, 0, 0]);

        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 7, 1, 0).unwrap();
        run(&r, &a, out_action::REGISTER, 0, 1, 0).unwrap();
        let d = r
            .persistent_reserve_in(in_action::READ_RESERVATION, 64)
            .unwrap();
        assert_eq!(
            (d[7], d[21]),
            (16, 7),
            "still reserved for the other registrant"
        );
        // The remaining registrant holds it and may release it.
        run(&r, &b, out_action::RELEASE, 7, 2, 0).unwrap();
    }

    #[test]
    fn release_with_the_wrong_type_is_refused() {
        let r = Reservations::new();
        let a = nexus(1);
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 1, 1, 0).unwrap();
        assert_eq!(
            run(&r, &a, out_action::RELEASE, 3, 1, 0),
            Err(Failure::Check(
                Sense::invalid_release_of_persistent_reservation()
            ))
        );
        run(&r, &a, out_action::RELEASE, 1, 1, 0).unwrap();
    }

    #[test]
    fn preempt_removes_a_registration_and_bumps_the_generation_once() {
        let r = Reservations::new();
        let (a, b) = (nexus(1), nexus(2));
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &b, out_action::REGISTER, 0, 0, 2).unwrap();
        let before = keys(&r).0;
        let told = run(&r, &b, out_action::PREEMPT, 3, 2, 1).unwrap();
        assert_eq!(keys(&r), (before + 1, vec![2]));
        assert_eq!(told, vec![(a.clone(), Attention::RegistrationsPreempted)]);
        assert_eq!(
            run(&r, &b, out_action::PREEMPT, 3, 2, 9),
            Err(Failure::ReservationConflict)
        );
    }

    #[test]
    fn preempting_the_holder_takes_the_reservation() {
        let r = Reservations::new();
        let (a, b) = (nexus(1), nexus(2));
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &b, out_action::REGISTER, 0, 0, 2).unwrap();
        run(&r, &a, out_action::RESERVE, 3, 1, 0).unwrap();
        run(&r, &b, out_action::PREEMPT, 1, 2, 1).unwrap();
        assert!(r.check(&b, &WRITE).is_ok());
        assert!(r.check(&a, &WRITE).is_err());
        assert!(
            r.check(&a, &READ).is_ok(),
            "Write Exclusive lets others read"
        );
    }

    #[test]
    fn clear_drops_everything() {
        let r = Reservations::new();
        let a = nexus(1);
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 3, 1, 0).unwrap();
        let before = keys(&r).0;
        run(&r, &a, out_action::CLEAR, 0, 1, 0).unwrap();
        assert_eq!(keys(&r), (before + 1, vec![]));
        assert!(r.check(&nexus(9), &WRITE).is_ok());
    }

    #[test]
    fn legacy_reservation_follows_its_nexus() {
        let r = Reservations::new();
        let (a, b) = (nexus(1), nexus(2));
        r.reserve(&a).unwrap();
        r.reserve(&a).unwrap();
        assert_eq!(r.reserve(&b), Err(Failure::ReservationConflict));
        assert!(r.check(&b, &READ).is_err());
        assert!(r.check(&b, &Command::Release).is_ok());
        r.release(&b).unwrap();
        assert!(
            r.check(&b, &READ).is_err(),
            "RELEASE from a non-holder does nothing"
        );
        r.nexus_lost(&a);
        assert!(r.check(&b, &READ).is_ok(), "nexus loss releases it");
        r.reserve(&b).unwrap();
        r.reset();
        assert!(r.check(&a, &WRITE).is_ok(), "a reset releases it");
    }

    #[test]
    fn legacy_reservations_conflict_with_persistent_ones() {
        let r = Reservations::new();
        let a = nexus(1);
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 1, 1, 0).unwrap();
        assert_eq!(r.reserve(&a), Err(Failure::ReservationConflict));
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        let r = Reservations::new();
        let (o, mut p) = out(out_action::REGISTER, 0, 0, 1);
        p[20] = 0x01;
        assert!(matches!(
            r.persistent_reserve_out(&nexus(1), &o, &p),
            Err(Failure::Check(_))
        ));
        let bad = ReserveOut {
            service_action: 7,
            ..o
        };
        assert!(Reservations::check_out(&bad).is_err());
    }

    #[test]
    fn report_capabilities_and_full_status_layouts() {
        let r = Reservations::new();
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
