//! The audit's framer and lines, fed by hand-made SFTP packets.

use super::*;
use proptest::prelude::*;

fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::once(kind)
        .chain(fields.iter().flat_map(|f| f.iter().copied()))
        .collect();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn u32b(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = u32b(s.len() as u32);
    out.extend_from_slice(s);
    out
}

/// A client writing 3000 bytes to a new file, reading them back, then renaming it, and
/// the server's answers, in the order they cross (binary handles, as OpenSSH's).
/// `true`: client → server.
fn session() -> Vec<(bool, Vec<u8>)> {
    let handle: &[u8] = &[0, 0, 0, 0x81];
    let (w, r) = (0x02 | 0x08 | 0x10, 0x01);
    let data = vec![7u8; 3000];
    let ok = |id| packet(STATUS, &[&u32b(id), &u32b(0), &string(b""), &string(b"")]);
    vec![
        (
            true,
            packet(OPEN, &[&u32b(1), &string(b"up/a.bin"), &u32b(w), &u32b(0)]),
        ),
        (false, packet(HANDLE, &[&u32b(1), &string(handle)])),
        (
            true,
            packet(
                WRITE,
                &[
                    &u32b(2),
                    &string(handle),
                    &0u64.to_be_bytes(),
                    &string(&data),
                ],
            ),
        ),
        (false, ok(2)),
        (true, packet(CLOSE, &[&u32b(3), &string(handle)])),
        (false, ok(3)),
        (
            true,
            packet(OPEN, &[&u32b(4), &string(b"up/a.bin"), &u32b(r), &u32b(0)]),
        ),
        (false, packet(HANDLE, &[&u32b(4), &string(handle)])),
        (
            true,
            packet(
                READ,
                &[&u32b(5), &string(handle), &0u64.to_be_bytes(), &u32b(32768)],
            ),
        ),
        (false, packet(DATA, &[&u32b(5), &string(&data)])),
        (true, packet(CLOSE, &[&u32b(6), &string(handle)])),
        (false, ok(6)),
        (
            true,
            packet(
                EXTENDED,
                &[
                    &u32b(7),
                    &string(b"posix-rename@openssh.com"),
                    &string(b"up/a.bin"),
                    &string(b"up/b.bin"),
                ],
            ),
        ),
        (false, ok(7)),
        (true, packet(REMOVE, &[&u32b(8), &string(b"nope")])),
        (
            false,
            packet(
                STATUS,
                &[&u32b(8), &u32b(2), &string(b"no such file"), &string(b"")],
            ),
        ),
    ]
}

/// The lines for the session, each packet fed in pieces of these sizes (cycled).
fn lines(pieces: &[usize]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = SftpAudit::new(AuditLog::open(&path).unwrap(), Default::default());
    let mut sizes = pieces.iter().cycle();
    for (request, bytes) in session() {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            match request {
                true => audit.requests(&rest[..n]),
                false => audit.replies(&rest[..n]),
            }
            rest = &rest[n..];
        }
    }
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("time");
            v
        })
        .collect()
}

#[test]
fn file_operations_become_lines() {
    let lines = lines(&[usize::MAX]);
    let expected = [
        json!({"op": "open", "path": "up/a.bin", "mode": "write,create,truncate", "status": "ok"}),
        json!({"op": "close", "path": "up/a.bin", "mode": "write,create,truncate", "bytes_read": 0, "bytes_written": 3000, "status": "ok"}),
        json!({"op": "open", "path": "up/a.bin", "mode": "read", "status": "ok"}),
        json!({"op": "close", "path": "up/a.bin", "mode": "read", "bytes_read": 3000, "bytes_written": 0, "status": "ok"}),
        json!({"op": "rename", "path": "up/a.bin", "to": "up/b.bin", "status": "ok"}),
        json!({"op": "remove", "path": "nope", "status": "no_such_file"}),
    ];
    assert_eq!(lines, expected);
}

#[test]
fn a_stream_that_is_not_sftp_stops_the_framer_once() {
    let mut framer = Framer::default();
    let mut seen = 0;
    let broke = framer.feed(&[0, 0, 0, 0, 1, 2, 3], |_| seen += 1);
    assert_eq!(broke, Some("empty packet"));
    assert_eq!(framer.feed(&packet(OPEN, &[&u32b(1)]), |_| seen += 1), None);
    assert_eq!(seen, 0);
    let mut framer = Framer::default();
    let huge = (MAX_PACKET as u32 + 1).to_be_bytes();
    assert_eq!(framer.feed(&huge, |_| seen += 1), Some("oversized packet"));
}

/// Feeds each (direction, packet) whole; the lines written, without their time.
fn audit_of(packets: &[(bool, Vec<u8>)]) -> (Vec<Value>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let audit = SftpAudit::new(log.clone(), Default::default());
    for (request, bytes) in packets {
        match request {
            true => audit.requests(bytes),
            false => audit.replies(bytes),
        }
    }
    let lines = std::fs::read_to_string(&path).unwrap();
    let lines = lines.lines().map(|l| {
        let mut v: Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().remove("time");
        v
    });
    (lines.collect(), log.lost())
}

/// A WRITE the server refuses wrote nothing: only answered-OK WRITEs count.
#[test]
fn refused_writes_are_not_counted_as_written() {
    let handle: &[u8] = &[0, 0, 0, 1];
    let status = |id, code| {
        packet(
            STATUS,
            &[&u32b(id), &u32b(code), &string(b""), &string(b"")],
        )
    };
    let write = |id| {
        let data = vec![1u8; 1000];
        packet(
            WRITE,
            &[
                &u32b(id),
                &string(handle),
                &0u64.to_be_bytes(),
                &string(&data),
            ],
        )
    };
    let (lines, _) = audit_of(&[
        (
            true,
            packet(
                OPEN,
                &[&u32b(1), &string(b"f"), &u32b(0x02 | 0x08), &u32b(0)],
            ),
        ),
        (false, packet(HANDLE, &[&u32b(1), &string(handle)])),
        (true, write(2)),
        (true, write(3)),
        (false, status(2, 0)),
        (false, status(3, 4)),
        (true, packet(CLOSE, &[&u32b(4), &string(handle)])),
        (false, status(4, 0)),
    ]);
    assert_eq!(lines[1]["op"], "close", "{lines:?}");
    assert_eq!(lines[1]["bytes_written"], 1000, "{lines:?}");
}

/// A transfer cut before its CLOSE still gets a close line when the channel ends, marked
/// `cut`, with what went through the handle.
#[test]
fn a_transfer_cut_before_close_gets_a_cut_close_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = SftpAudit::new(AuditLog::open(&path).unwrap(), Default::default());
    let handle: &[u8] = &[0, 0, 0, 2];
    audit.requests(&packet(
        OPEN,
        &[&u32b(1), &string(b"big.bin"), &u32b(0x01), &u32b(0)],
    ));
    audit.replies(&packet(HANDLE, &[&u32b(1), &string(handle)]));
    audit.requests(&packet(
        READ,
        &[&u32b(2), &string(handle), &0u64.to_be_bytes(), &u32b(500)],
    ));
    audit.replies(&packet(DATA, &[&u32b(2), &string(&[9u8; 500])]));
    audit.ended();
    audit.ended();
    let lines = audit_lines_of(&path);
    assert_eq!(lines.len(), 2, "once: {lines:?}");
    assert_eq!(lines[1]["op"], "close");
    assert_eq!(lines[1]["path"], "big.bin");
    assert_eq!(lines[1]["bytes_read"], 500);
    assert_eq!(lines[1]["status"], "cut");
}

fn audit_lines_of(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn broken_framing_is_logged_as_audit_lost_and_counted() {
    let ok = packet(STATUS, &[&u32b(1), &u32b(0), &string(b""), &string(b"")]);
    let (lines, lost) = audit_of(&[
        (true, vec![0, 0, 0, 0, 9, 9]),
        (true, packet(REMOVE, &[&u32b(1), &string(b"unseen")])),
        (false, ok),
    ]);
    let lost_line = json!({"op": "audit_lost", "direction": "requests", "reason": "empty packet"});
    assert_eq!(lines, [lost_line]);
    assert_eq!(lost, 1);
}

#[test]
fn symlinks_hardlinks_and_server_side_copies_are_audited() {
    let ok = |id| packet(STATUS, &[&u32b(id), &u32b(0), &string(b""), &string(b"")]);
    let extended = |id, name: &[u8], fields: &[&[u8]]| {
        let (id, name) = (u32b(id), string(name));
        let all: Vec<&[u8]> = [&id[..], &name[..]]
            .into_iter()
            .chain(fields.iter().copied())
            .collect();
        packet(EXTENDED, &all)
    };
    let (a, b): (&[u8], &[u8]) = (&[0, 0, 0, 1], &[0, 0, 0, 2]);
    let (r, w) = (0x01, 0x02 | 0x08);
    let (lines, _) = audit_of(&[
        (
            true,
            packet(
                SYMLINK,
                &[&u32b(1), &string(b"/etc/passwd"), &string(b"up/link")],
            ),
        ),
        (false, ok(1)),
        (
            true,
            extended(
                2,
                b"hardlink@openssh.com",
                &[&string(b"up/a"), &string(b"up/h")],
            ),
        ),
        (false, ok(2)),
        (
            true,
            packet(OPEN, &[&u32b(3), &string(b"up/a"), &u32b(r), &u32b(0)]),
        ),
        (false, packet(HANDLE, &[&u32b(3), &string(a)])),
        (
            true,
            packet(OPEN, &[&u32b(4), &string(b"up/c"), &u32b(w), &u32b(0)]),
        ),
        (false, packet(HANDLE, &[&u32b(4), &string(b)])),
        (
            true,
            extended(
                5,
                b"copy-data",
                &[
                    &string(a),
                    &0u64.to_be_bytes(),
                    &4096u64.to_be_bytes(),
                    &string(b),
                    &0u64.to_be_bytes(),
                ],
            ),
        ),
        (false, ok(5)),
    ]);
    assert_eq!(
        lines[0],
        json!({"op": "symlink", "path": "/etc/passwd", "to": "up/link", "status": "ok"})
    );
    assert_eq!(
        lines[1],
        json!({"op": "hardlink", "path": "up/a", "to": "up/h", "status": "ok"})
    );
    assert_eq!(
        lines[4],
        json!({"op": "copy", "path": "up/a", "to": "up/c", "length": 4096, "status": "ok"})
    );
}

#[test]
fn the_audit_file_is_private_and_never_opened_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    AuditLog::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let error = AuditLog::open(&link).unwrap_err().to_string();
    assert!(error.contains("symbolic link"), "{error}");
}

proptest! {
    /// However the stream is cut into pieces, the same lines come out.
    #[test]
    fn pieces_do_not_matter(pieces in proptest::collection::vec(1usize..700, 1..20)) {
        prop_assert_eq!(lines(&pieces), lines(&[usize::MAX]));
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_input(requests in proptest::collection::vec(any::<u8>(), 0..600), replies in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let audit = SftpAudit::new(AuditLog::open(&dir.path().join("a")).unwrap(), Default::default());
        audit.requests(&requests);
        audit.replies(&replies);
    }
}
