//! The SFTP audit: one JSON line per file operation (open, close with the bytes read and
//! written through the handle, rename, remove, mkdir, rmdir, setstat, symlink, hardlink,
//! copy-data), read off the relayed SFTP stream. Only packet heads are kept: file data
//! passes without being copied. A stream that stops framing as SFTP is not audited further,
//! and says so (`audit_lost`).

use russh_sftp::protocol::OpenFlags;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

// SFTP v3 packet types (draft-ietf-secsh-filexfer-02).
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const RENAME: u8 = 18;
const SYMLINK: u8 = 20;
const EXTENDED: u8 = 200;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;

/// The most of a data-carrying packet (WRITE, DATA) that is kept: its head.
const HEAD: usize = 512;
/// Larger control packets are not audited (no path is that long).
const MAX_KEPT: usize = 64 * 1024;
/// A longer packet is not SFTP (OpenSSH's limit is 256 KiB): the framing is lost.
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// Where audit lines go: a file opened for appending, shared by a route's sessions.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
    /// Sessions whose audit stopped because their stream did not frame as SFTP.
    lost: AtomicU64,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the file for appending; never through a symbolic link
    /// (one planted at the path would send the audit elsewhere).
    pub fn open(path: &Path) -> std::io::Result<Arc<AuditLog>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => std::io::Error::other(
                    "is a symbolic link: the audit log is never opened through one",
                ),
                _ => e,
            })?;
        Ok(Arc::new(AuditLog {
            file: Mutex::new(file),
            lost: AtomicU64::new(0),
        }))
    }

    /// How many sessions' audits were lost (`audit_lost` lines).
    pub fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        // One write per line: appends from many sessions do not interleave.
        if let Err(e) = self.file.lock().unwrap().write_all(text.as_bytes()) {
            tracing::warn!("sftp audit log: {e}");
        }
    }
}

/// Splits one direction of the stream into packets, keeping each one's head.
#[derive(Debug, Default)]
pub struct Framer {
    length: Vec<u8>,
    remaining: usize,
    keep: usize,
    packet: Vec<u8>,
    /// The stream did not frame as SFTP: nothing more is read from it.
    broken: bool,
}

impl Framer {
    /// Feeds bytes; `packet` gets each complete packet's kept bytes, type first. `Some(why)`
    /// when the framing breaks on these bytes (nothing more is read after that).
    pub fn feed(&mut self, mut data: &[u8], mut packet: impl FnMut(&[u8])) -> Option<&'static str> {
        while !data.is_empty() && !self.broken {
            if self.remaining == 0 {
                let take = (4 - self.length.len()).min(data.len());
                self.length.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.length.len() == 4 {
                    let length = u32::from_be_bytes(self.length[..].try_into().unwrap());
                    self.length.clear();
                    let why = match length as usize {
                        0 => "empty packet",
                        n if n > MAX_PACKET => "oversized packet",
                        _ => "",
                    };
                    if !why.is_empty() {
                        self.broken = true;
                        return Some(why);
                    }
                    self.remaining = length as usize;
                    self.packet.clear();
                }
                continue;
            }
            if self.packet.is_empty() {
                // The type decides how much is kept: data-carrying packets only their head.
                let kind = data[0];
                self.packet.push(kind);
                data = &data[1..];
                let total = self.remaining;
                self.remaining -= 1;
                self.keep = match matches!(kind, WRITE | DATA) || total > MAX_KEPT {
                    true => total.min(HEAD),
                    false => total,
                };
            } else {
                let take = self.remaining.min(data.len());
                let want = self.keep.saturating_sub(self.packet.len()).min(take);
                self.packet.extend_from_slice(&data[..want]);
                self.remaining -= take;
                data = &data[take..];
            }
            if self.remaining == 0 {
                packet(&self.packet);
            }
        }
        None
    }
}

/// Reads SFTP fields off a packet.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_at_checked(4)?;
        self.0 = rest;
        Some(u32::from_be_bytes(head.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        let (high, low) = (self.u32()?, self.u32()?);
        Some(u64::from(high) << 32 | u64::from(low))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn text(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// A request waiting for its answer.
#[derive(Debug)]
enum Pending {
    Open {
        path: String,
        flags: u32,
    },
    Close {
        handle: Vec<u8>,
    },
    Read {
        handle: Vec<u8>,
    },
    Path {
        op: &'static str,
        path: String,
    },
    /// rename, symlink, hardlink: two paths as sent.
    Pair {
        op: &'static str,
        path: String,
        to: String,
    },
    /// copy-data between two open files (server side).
    Copy {
        path: String,
        to: String,
        length: u64,
    },
    FSetStat {
        handle: Vec<u8>,
    },
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    flags: u32,
    read: u64,
    written: u64,
}

/// One SFTP session's audit: both directions' framers and what links them.
pub struct SftpAudit {
    log: Arc<AuditLog>,
    /// Fields every line carries (session id, user, route...).
    context: serde_json::Map<String, Value>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    requests: Framer,
    replies: Framer,
    pending: HashMap<u32, Pending>,
    files: HashMap<Vec<u8>, OpenFile>,
}

impl SftpAudit {
    pub fn new(log: Arc<AuditLog>, context: serde_json::Map<String, Value>) -> Self {
        SftpAudit {
            log,
            context,
            state: Mutex::default(),
        }
    }

    /// Client → server bytes.
    pub fn requests(&self, data: &[u8]) {
        let broke = {
            let mut state = self.state.lock().unwrap();
            let State {
                requests,
                pending,
                files,
                ..
            } = &mut *state;
            requests.feed(data, |packet| request(packet, pending, files))
        };
        if let Some(why) = broke {
            self.lost("requests", why);
        }
    }

    /// Server → client bytes.
    pub fn replies(&self, data: &[u8]) {
        let mut lines = Vec::new();
        let broke = {
            let mut state = self.state.lock().unwrap();
            let State {
                replies,
                pending,
                files,
                ..
            } = &mut *state;
            replies.feed(data, |packet| {
                reply(packet, pending, files, &mut lines);
            })
        };
        for line in lines {
            self.write(line);
        }
        if let Some(why) = broke {
            self.lost("replies", why);
        }
    }

    /// The audit of this session stops here: said in the log, counted.
    fn lost(&self, direction: &str, why: &str) {
        self.log.lost.fetch_add(1, Relaxed);
        tracing::warn!(direction, "sftp audit lost: {why}");
        self.write(json!({"op": "audit_lost", "direction": direction, "reason": why}));
    }

    /// One line, with the time and the session's fields.
    fn write(&self, mut line: Value) {
        if let Value::Object(fields) = &mut line {
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            fields.insert("time".into(), Value::String(now.to_string()));
            for (k, v) in &self.context {
                fields.insert(k.clone(), v.clone());
            }
        }
        self.log.write(&line);
    }
}

fn request(
    packet: &[u8],
    pending: &mut HashMap<u32, Pending>,
    files: &mut HashMap<Vec<u8>, OpenFile>,
) {
    let Some((&kind, rest)) = packet.split_first() else {
        return;
    };
    let mut f = Fields(rest);
    let Some(id) = f.u32() else { return };
    let entry = match kind {
        OPEN => f
            .text()
            .zip(f.u32())
            .map(|(path, flags)| Pending::Open { path, flags }),
        CLOSE => f.bytes().map(|h| Pending::Close { handle: h.to_vec() }),
        READ => f.bytes().map(|h| Pending::Read { handle: h.to_vec() }),
        WRITE => {
            // handle, offset, then the data's length (the data itself was not kept).
            if let Some(handle) = f.bytes()
                && let Some(file) = files.get_mut(handle)
                && f.u32().and(f.u32()).is_some()
                && let Some(length) = f.u32()
            {
                file.written += u64::from(length);
            }
            None
        }
        SETSTAT => f.text().map(|path| Pending::Path {
            op: "setstat",
            path,
        }),
        FSETSTAT => f.bytes().map(|h| Pending::FSetStat { handle: h.to_vec() }),
        REMOVE => f.text().map(|path| Pending::Path { op: "remove", path }),
        MKDIR => f.text().map(|path| Pending::Path { op: "mkdir", path }),
        RMDIR => f.text().map(|path| Pending::Path { op: "rmdir", path }),
        RENAME => pair(&mut f, "rename"),
        // As sent: OpenSSH sends the target first, then the link (the draft's order reversed).
        SYMLINK => pair(&mut f, "symlink"),
        // OpenSSH's sftp renames with its extension when the server offers it.
        EXTENDED => match f.bytes() {
            Some(b"posix-rename@openssh.com") => pair(&mut f, "rename"),
            Some(b"hardlink@openssh.com") => pair(&mut f, "hardlink"),
            Some(b"copy-data") => copy_data(&mut f, files),
            Some(b"lsetstat@openssh.com") => f.text().map(|path| Pending::Path {
                op: "setstat",
                path,
            }),
            _ => None,
        },
        _ => None,
    };
    if let Some(entry) = entry {
        pending.insert(id, entry);
    }
}

fn reply(
    packet: &[u8],
    pending: &mut HashMap<u32, Pending>,
    files: &mut HashMap<Vec<u8>, OpenFile>,
    lines: &mut Vec<Value>,
) {
    let Some((&kind, rest)) = packet.split_first() else {
        return;
    };
    let mut f = Fields(rest);
    let Some(id) = f.u32() else { return };
    match kind {
        DATA => {
            if let Some(Pending::Read { handle }) = pending.remove(&id)
                && let Some(file) = files.get_mut(&handle)
                && let Some(length) = f.u32()
            {
                file.read += u64::from(length);
            }
        }
        HANDLE => {
            if let Some(Pending::Open { path, flags }) = pending.remove(&id)
                && let Some(handle) = f.bytes()
            {
                lines
                    .push(json!({"op": "open", "path": path, "mode": mode(flags), "status": "ok"}));
                let file = OpenFile {
                    path,
                    flags,
                    read: 0,
                    written: 0,
                };
                files.insert(handle.to_vec(), file);
            }
        }
        STATUS => {
            let status = f.u32().map_or("unknown", status_name);
            let line = match pending.remove(&id) {
                None | Some(Pending::Read { .. }) => return,
                Some(Pending::Open { path, flags }) => {
                    json!({"op": "open", "path": path, "mode": mode(flags), "status": status})
                }
                Some(Pending::Close { handle }) => {
                    let Some(file) = files.remove(&handle) else {
                        return;
                    };
                    json!({"op": "close", "path": file.path, "mode": mode(file.flags), "bytes_read": file.read, "bytes_written": file.written, "status": status})
                }
                Some(Pending::Path { op, path }) => {
                    json!({"op": op, "path": path, "status": status})
                }
                Some(Pending::Pair { op, path, to }) => {
                    json!({"op": op, "path": path, "to": to, "status": status})
                }
                Some(Pending::Copy { path, to, length }) => {
                    json!({"op": "copy", "path": path, "to": to, "length": length, "status": status})
                }
                Some(Pending::FSetStat { handle }) => {
                    let Some(file) = files.get(&handle) else {
                        return;
                    };
                    json!({"op": "setstat", "path": file.path, "status": status})
                }
            };
            lines.push(line);
        }
        _ => {}
    }
}

/// A request naming two paths (`op` from the first to the second).
fn pair(f: &mut Fields<'_>, op: &'static str) -> Option<Pending> {
    let (path, to) = f.text().zip(f.text())?;
    Some(Pending::Pair { op, path, to })
}

/// copy-data: read handle, offset, length (0: to its end), write handle, offset.
fn copy_data(f: &mut Fields<'_>, files: &HashMap<Vec<u8>, OpenFile>) -> Option<Pending> {
    let path_of = |handle: &[u8]| files.get(handle).map_or("?".into(), |f| f.path.clone());
    let from = path_of(f.bytes()?);
    let _offset = f.u64()?;
    let length = f.u64()?;
    let to = path_of(f.bytes()?);
    Some(Pending::Copy {
        path: from,
        to,
        length,
    })
}

/// `read,write,create,truncate`.
fn mode(flags: u32) -> String {
    let flags = OpenFlags::from_bits_truncate(flags);
    let names = [
        (OpenFlags::READ, "read"),
        (OpenFlags::WRITE, "write"),
        (OpenFlags::APPEND, "append"),
        (OpenFlags::CREATE, "create"),
        (OpenFlags::TRUNCATE, "truncate"),
        (OpenFlags::EXCLUDE, "exclusive"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    set.join(",")
}

fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "eof",
        2 => "no_such_file",
        3 => "permission_denied",
        4 => "failure",
        5 => "bad_message",
        6 => "no_connection",
        7 => "connection_lost",
        8 => "op_unsupported",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn broken_framing_is_logged_as_audit_lost_and_counted() {
        let ok = packet(STATUS, &[&u32b(1), &u32b(0), &string(b""), &string(b"")]);
        let (lines, lost) = audit_of(&[
            (true, vec![0, 0, 0, 0, 9, 9]),
            (true, packet(REMOVE, &[&u32b(1), &string(b"unseen")])),
            (false, ok),
        ]);
        let lost_line =
            json!({"op": "audit_lost", "direction": "requests", "reason": "empty packet"});
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
}
