//! What a client of an inspecting listener says first, byte for byte the same on every
//! target of a case: the gateway must read it to route (FIX Logon → TargetCompID, MQ
//! initial data → channel), the echo backend plays the venue and sends it back.

use protocols::mq::{Segment, encode_initial};

/// The FIX target's venue, the MQ target's channel.
pub const VENUE: &str = "VENUE";
pub const CHANNEL: &str = "APP1.SVRCONN";

/// A FIX 4.4 Logon from CLIENT1 to [`VENUE`].
pub fn fix_logon() -> Vec<u8> {
    protocols::fix::encode(
        "FIX.4.4",
        &[
            (35, "A"),
            (49, "CLIENT1"),
            (56, VENUE),
            (34, "1"),
            (52, "20261205-12:00:00.000"),
            (98, "0"),
            (108, "30"),
        ],
    )
}

/// An IBM MQ client's first segment (TSH, ASCII) for [`CHANNEL`].
pub fn mq_initial() -> Vec<u8> {
    encode_initial(Segment::Tsh, false, CHANNEL, "QM1")
}
