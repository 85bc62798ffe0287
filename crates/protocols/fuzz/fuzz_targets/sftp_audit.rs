//! Any bytes, cut anywhere, either way: the SFTP audit never panics and never stops the
//! relay (its lines go to /dev/null here).
#![no_main]

use causeway_ssh::audit::{AuditLog, SftpAudit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let log = AuditLog::open(std::path::Path::new("/dev/null")).unwrap();
    let audit = SftpAudit::new(log, Default::default());
    // The first byte picks the piece size; pieces alternate between the two directions.
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    for (i, piece) in rest.chunks(usize::from(size).max(1)).enumerate() {
        match i % 2 {
            0 => audit.requests(piece),
            _ => audit.replies(piece),
        }
    }
});
