//! Any bytes: the FIX framer never panics and never claims more bytes than it was given or
//! allowed; a Logon it accepts is refused by a Logout that frames back.
#![no_main]

use causeway_protocols::fix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = fix::frame(data, 8192) {
        assert!(message.length <= data.len() && message.length <= 8192);
    }
    if let Ok(logon) = fix::logon(data, 8192) {
        let out = fix::logout(&logon, "refused", "20260101-00:00:00.000");
        let framed = fix::frame(&out, 1 << 20).expect("our Logout frames");
        assert_eq!(framed.msg_type(), Some("5"));
    }
});
