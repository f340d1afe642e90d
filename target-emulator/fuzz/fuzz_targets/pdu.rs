//! PDUs framed off the wire, with and without digests, decoded as every PDU type.
//! See `target_emulator::fuzzing::pdu`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| target_emulator::fuzzing::pdu(data));
