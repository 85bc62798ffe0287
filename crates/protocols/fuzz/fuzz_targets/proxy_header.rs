//! Any bytes: the PROXY parser never panics and never claims more bytes than it was given;
//! a header it accepts encodes back to one that parses to the same addresses.
#![no_main]

use causeway_protocols::proxy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = proxy::parse(data) {
        assert!(header.length <= data.len());
        if let Some((source, destination)) = header.addresses {
            let again = proxy::encode_v2(source, destination, &[]).expect("no TLVs: fits");
            let parsed = proxy::parse(&again).expect("our own header parses");
            assert_eq!(parsed.addresses, Some((source, destination)));
        }
    }
});
