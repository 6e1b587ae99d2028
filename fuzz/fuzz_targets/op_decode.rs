//! Op payload decoding must never panic, and what decodes must re-encode stably.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_store::fuzzing::op(data);
});
