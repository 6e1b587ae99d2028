//! Write-ahead-log frame decoding (strict and the delta log's variant) must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_store::fuzzing::wal_frames(data);
});
