//! CDBs parsed, prepared and executed against a logical unit made from the input,
//! GET LBA STATUS(16) and (32) always among them.
//! See `target_emulator::fuzzing::cdb`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| target_emulator::fuzzing::cdb(data));
