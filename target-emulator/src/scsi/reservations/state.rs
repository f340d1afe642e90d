//! The reservation state of one logical unit: the registrations, the persistent reservation
//! and the RESERVE(6) holder, behind one mutex. The service actions in the sibling modules
//! change it; nothing here knows a CDB.

use super::super::nexus::Nexus;
use super::super::unit_attention::Attention;
use std::sync::{Mutex, MutexGuard};

/// The only scope SPC-4 still defines: the whole logical unit.
pub(super) const LU_SCOPE: u8 = 0;

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
    pub(super) fn from_code(code: u8) -> Option<Self> {
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
    pub(super) fn all_registrants(self) -> bool {
        matches!(
            self,
            Kind::WriteExclusiveAllRegistrants | Kind::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants that are not the holder still get full access.
    pub(super) fn registrants_share(self) -> bool {
        !matches!(self, Kind::WriteExclusive | Kind::ExclusiveAccess)
    }

    /// Reads are refused to those without access too (the Exclusive Access family).
    pub(super) fn excludes_reads(self) -> bool {
        matches!(
            self,
            Kind::ExclusiveAccess
                | Kind::ExclusiveAccessRegistrantsOnly
                | Kind::ExclusiveAccessAllRegistrants
        )
    }
}

#[derive(Debug, Clone)]
pub(super) struct Registration {
    pub(super) nexus: Nexus,
    pub(super) key: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Persistent {
    /// The reserving nexus; for "all registrants" types every registrant holds it.
    pub(super) holder: Nexus,
    pub(super) kind: Kind,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// PRGENERATION: bumped by every PERSISTENT RESERVE OUT that changes registrations.
    pub(super) generation: u32,
    /// In registration order, which READ KEYS reports.
    pub(super) registrations: Vec<Registration>,
    pub(super) persistent: Option<Persistent>,
    /// The holder of a RESERVE(6) reservation.
    pub(super) legacy: Option<Nexus>,
}

impl State {
    pub(super) fn key_of(&self, nexus: &Nexus) -> Option<u64> {
        self.registrations
            .iter()
            .find(|r| &r.nexus == nexus)
            .map(|r| r.key)
    }

    pub(super) fn holds(&self, nexus: &Nexus) -> bool {
        match &self.persistent {
            Some(p) if p.kind.all_registrants() => self.key_of(nexus).is_some(),
            Some(p) => &p.holder == nexus,
            None => false,
        }
    }

    /// Whether `nexus` may use the medium freely under the persistent reservation.
    pub(super) fn has_access(&self, nexus: &Nexus) -> bool {
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
    pub(super) fn unregister(&mut self, nexus: &Nexus) -> Vec<(Nexus, Attention)> {
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
    pub(super) fn others(&self, except: &Nexus, attention: Attention) -> Vec<(Nexus, Attention)> {
        self.registrations
            .iter()
            .filter(|r| &r.nexus != except)
            .map(|r| (r.nexus.clone(), attention))
            .collect()
    }

    /// Removes every registration with `key` except that of `keep`; the nexuses removed.
    pub(super) fn remove_key(&mut self, key: u64, keep: &Nexus) -> Vec<Nexus> {
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

impl Reservations {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
