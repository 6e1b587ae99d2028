//! Catalog base checkpoint parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_store::fuzzing::checkpoint(data);
});
