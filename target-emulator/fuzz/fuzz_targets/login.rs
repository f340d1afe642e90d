//! Login text: key parsing, negotiation of each key, and login conversations.
//! See `target_emulator::fuzzing::login`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| target_emulator::fuzzing::login(data));
