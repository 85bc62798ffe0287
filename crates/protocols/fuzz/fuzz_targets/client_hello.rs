//! Any bytes: the ClientHello parser never panics.
#![no_main]

use causeway_protocols::tls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tls::client_hello(data);
});
