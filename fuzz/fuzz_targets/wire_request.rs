//! Decoding a request of any route (JSON body and query string) must never panic, and the fast
//! log-batch reader must accept nothing the general one refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_server::fuzzing::wire_request(data);
});
