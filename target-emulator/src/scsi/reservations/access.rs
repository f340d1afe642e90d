//! Who may run which command while a reservation is held (SPC-4 §5.13.1 table 63, SPC-2
//! §5.5.1): the check every command passes before any data moves.

use super::super::cdb::Command;
use super::super::nexus::Nexus;
use super::super::sense::Failure;
use super::state::Reservations;

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

impl Reservations {
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
}

#[cfg(test)]
mod tests {
    use super::super::persistent_out::out_action;
    use super::super::test_support::*;
    use super::*;

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
            let r = Reservations::default();
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
}
