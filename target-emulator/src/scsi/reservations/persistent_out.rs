//! PERSISTENT RESERVE OUT (SPC-4 §6.16, §5.13.7–5.13.11): register, reserve, release, clear
//! and preempt. Each service action says which nexuses must hear what it did; the caller
//! establishes those unit attentions.

use super::super::cdb::ReserveOut;
use super::super::nexus::Nexus;
use super::super::sense::{Failure, Sense};
use super::super::unit_attention::Attention;
use super::state::{Kind, LU_SCOPE, Persistent, Registration, Reservations, State};

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2).
pub(super) mod out_action {
    pub const REGISTER: u8 = 0;

    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;

    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;

    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 6;
}

/// PERSISTENT RESERVE OUT basic parameter list (SPC-4 §6.16.3).
pub const PARAMETER_LIST_LEN: usize = 24;

/// Longest parameter list we take in before looking at it: room for SPEC_I_PT lists, which
/// are refused once read.
pub const MAX_PARAMETER_LIST_LEN: u32 = 4096;

/// The decoded PERSISTENT RESERVE OUT parameter list.
struct Parameters {
    key: u64,
    service_action_key: u64,
}

impl Reservations {
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
    use super::super::persistent_in::in_action;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn register_reregister_and_unregister() {
        let r = Reservations::default();
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
    fn holder_unregistering_releases_unless_all_registrants() {
        let r = Reservations::default();
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
        let r = Reservations::default();
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
        let r = Reservations::default();
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
        let r = Reservations::default();
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
        let r = Reservations::default();
        let a = nexus(1);
        run(&r, &a, out_action::REGISTER, 0, 0, 1).unwrap();
        run(&r, &a, out_action::RESERVE, 3, 1, 0).unwrap();
        let before = keys(&r).0;
        run(&r, &a, out_action::CLEAR, 0, 1, 0).unwrap();
        assert_eq!(keys(&r), (before + 1, vec![]));
        assert!(r.check(&nexus(9), &WRITE).is_ok());
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        let r = Reservations::default();
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
}
