//! Any text: the CONNECT target parser never panics; a target it accepts has a host and a
//! port, carries no user information, writes back to a target that parses the same, and is
//! one the `http` crate (what parsed the request line first) accepts too, with the same
//! host and port (differential).
#![no_main]

use causeway_protocols::connect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = connect::target(text) else {
        return;
    };
    assert!(!target.host.is_empty() && target.port > 0 && !text.contains('@'));
    let written = format!("{}:{}", target.host, target.port);
    assert_eq!(connect::target(&written), Ok(target.clone()));
    let theirs: http::uri::Authority = text.parse().expect("http accepts what we accept");
    assert_eq!(theirs.port_u16(), Some(target.port));
    assert_eq!(theirs.host(), target.host);
});
