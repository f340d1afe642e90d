//! Reservations: who may use a logical unit. Persistent reservations (SPC-4 §5.13, PERSISTENT
//! RESERVE IN §6.15 and OUT §6.16) and the older RESERVE(6)/RELEASE(6) (SPC-2 §5.5.1).
//!
//! One [`Reservations`] belongs to each exported logical unit and is shared by every session on
//! it (the target keeps it with the export); every command names its I_T nexus
//! ([`super::Nexus`]). Registrations survive the loss of their nexus but not a restart of the
//! target: nothing here is written anywhere (REPORT CAPABILITIES says PTPL_C=0 and APTPL=1 is
//! refused). This module must never do I/O; it only decides, and keeps the state behind a
//! mutex.
//!
//! - [`state`]: the registrations, the reservation itself and the RESERVE(6) holder.
//! - [`access`]: which commands a nexus may run under the reservation in force.
//! - [`persistent_in`] and [`persistent_out`]: the service actions of the two commands.
//!   PERSISTENT RESERVE OUT says which nexuses must hear about what it did (unit attentions);
//!   the caller establishes those conditions.
//! - [`legacy`]: RESERVE(6) and RELEASE(6).
//!
//! Not implemented: REGISTER AND MOVE, REPLACE LOST RESERVATION, SPEC_I_PT and ALL_TG_PT
//! (refused as invalid fields).

mod access;
mod legacy;
mod persistent_in;
mod persistent_out;
mod state;
#[cfg(test)]
mod test_support;

pub use state::Reservations;
