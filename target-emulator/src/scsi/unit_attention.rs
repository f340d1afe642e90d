//! Unit attention conditions (SAM-5 §5.14, SPC-4 §5.12): events an initiator hears about on
//! its next command to the logical unit, one CHECK CONDITION each.
//!
//! Conditions are kept per I_T nexus while it has a session; when its last session ends the
//! nexus is gone and so are its conditions. UA_INTLCK_CTRL is 0: reporting a condition clears
//! it. INQUIRY and REPORT LUNS run without reporting one; REQUEST SENSE returns it as its data.
//!
//! Established for: a logical unit reset (BUS DEVICE RESET FUNCTION OCCURRED, SAM-5 §6.3.3) and
//! the persistent reservation changes SPC-4 §5.13.11 names (preempted, released, cleared).
//! Not for a target warm reset: libiscsi's RESERVE(6) tests send their next command on the
//! same session right after one and take any CHECK CONDITION as a failure (tgt and LIO refuse
//! warm resets instead); nor for a new nexus, whose first command nobody expects to fail.

use super::cdb::Command;
use super::nexus::Nexus;
use super::sense::Sense;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Additional sense codes of the conditions we establish (SPC-4 annex D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// 29h/03h, after a LOGICAL UNIT RESET.
    BusDeviceReset,
    /// 2Ah/03h, to registrants whose reservation a CLEAR removed.
    ReservationsPreempted,
    /// 2Ah/04h, to registrants when a registrants-only or all-registrants reservation goes.
    ReservationsReleased,
    /// 2Ah/05h, to a nexus whose registration another one preempted.
    RegistrationsPreempted,
}

impl Attention {
    fn sense(self) -> Sense {
        let (asc, ascq) = match self {
            Attention::BusDeviceReset => (0x29, 0x03),
            Attention::ReservationsPreempted => (0x2a, 0x03),
            Attention::ReservationsReleased => (0x2a, 0x04),
            Attention::RegistrationsPreempted => (0x2a, 0x05),
        };
        Sense::unit_attention(asc, ascq)
    }
}

/// At most this many conditions wait per nexus; older ones are dropped first (SAM-5 allows a
/// device server to lose conditions it cannot queue, reporting the newest).
const MAX_PENDING: usize = 16;

#[derive(Debug, Default)]
struct Pending {
    sessions: usize,
    queue: VecDeque<Attention>,
}

/// The pending unit attention conditions of one logical unit.
#[derive(Debug, Default)]
pub struct UnitAttentions {
    nexuses: Mutex<HashMap<Nexus, Pending>>,
}

impl UnitAttentions {
    fn lock(&self) -> MutexGuard<'_, HashMap<Nexus, Pending>> {
        self.nexuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session on `nexus` started.
    pub fn attach(&self, nexus: &Nexus) {
        self.lock().entry(nexus.clone()).or_default().sessions += 1;
    }

    /// A session on `nexus` ended; true when it was the last one (the nexus is lost).
    pub fn detach(&self, nexus: &Nexus) -> bool {
        let mut map = self.lock();
        let last = match map.get_mut(nexus) {
            Some(p) => {
                p.sessions = p.sessions.saturating_sub(1);
                p.sessions == 0
            }
            None => true,
        };
        if last {
            map.remove(nexus);
        }
        last
    }

    /// Establishes `attention` for every nexus with a session.
    pub fn post_all(&self, attention: Attention) {
        for p in self.lock().values_mut() {
            push(p, attention);
        }
    }

    /// Establishes `attention` for `nexus`, if it has a session.
    pub fn post(&self, nexus: &Nexus, attention: Attention) {
        if let Some(p) = self.lock().get_mut(nexus) {
            push(p, attention);
        }
    }

    /// The condition `command` from `nexus` must end with instead of running, if any; it is
    /// cleared by being reported. INQUIRY, REPORT LUNS and REQUEST SENSE run regardless.
    pub fn report(&self, nexus: &Nexus, command: &Command) -> Option<Sense> {
        if matches!(
            command,
            Command::Inquiry { .. } | Command::ReportLuns { .. } | Command::RequestSense { .. }
        ) {
            return None;
        }
        self.take(nexus)
    }

    /// Removes and returns the oldest condition for `nexus` (REQUEST SENSE's data).
    pub fn take(&self, nexus: &Nexus) -> Option<Sense> {
        self.lock()
            .get_mut(nexus)
            .and_then(|p| p.queue.pop_front())
            .map(Attention::sense)
    }
}

fn push(p: &mut Pending, attention: Attention) {
    if p.queue.contains(&attention) {
        return;
    }
    if p.queue.len() == MAX_PENDING {
        p.queue.pop_front();
    }
    p.queue.push_back(attention);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(n: u8) -> Nexus {
        Nexus::new("iqn.2026-11.test:ua", [0x80, 0, 0, 0, 0, n])
    }

    #[test]
    fn reset_reaches_every_attached_nexus_once() {
        let ua = UnitAttentions::default();
        let (a, b, gone) = (nexus(1), nexus(2), nexus(3));
        ua.attach(&a);
        ua.attach(&b);
        ua.post_all(Attention::BusDeviceReset);
        ua.post_all(Attention::BusDeviceReset);
        ua.post(&gone, Attention::RegistrationsPreempted);
        assert_eq!(
            ua.report(
                &a,
                &Command::Inquiry {
                    evpd: false,
                    page: 0,
                    allocation_length: 96
                }
            ),
            None
        );
        let s = ua.report(&a, &Command::TestUnitReady).unwrap();
        assert_eq!((s.asc, s.ascq), (0x29, 0x03));
        assert_eq!(
            ua.report(&a, &Command::TestUnitReady),
            None,
            "reporting clears it"
        );
        assert!(ua.take(&b).is_some());
        assert!(ua.take(&gone).is_none());
    }

    #[test]
    fn conditions_go_with_the_last_session() {
        let ua = UnitAttentions::default();
        let a = nexus(1);
        ua.attach(&a);
        ua.attach(&a);
        ua.post(&a, Attention::ReservationsReleased);
        assert!(!ua.detach(&a));
        assert!(ua.detach(&a));
        ua.attach(&a);
        assert!(ua.take(&a).is_none());
    }
}
