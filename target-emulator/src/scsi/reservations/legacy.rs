//! RESERVE(6) and RELEASE(6) (SPC-2 §5.5.1): one holder, gone with its nexus or a reset, and
//! refused while a persistent reservation exists.

use super::super::nexus::Nexus;
use super::super::sense::Failure;
use super::state::Reservations;

impl Reservations {
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
}

#[cfg(test)]
mod tests {
    use super::super::super::cdb::Command;
    use super::super::persistent_out::out_action;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn legacy_reservation_follows_its_nexus() {
        let r = Reservations::default();
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
        let r = Reservations::default();
        let a = nexus(1);
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 1, 1, 0).unwrap();
        assert_eq!(r.reserve(&a), Err(Failure::ReservationConflict));
    }
}
