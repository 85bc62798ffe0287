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

mod parse;
use parse::{OpenFile, Pending, mode, reply, request};

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

    /// The channel ended: a file still open (a transfer cut before its CLOSE) gets its
    /// close line all the same, with what went through it and `status: "cut"`.
    pub fn ended(&self) {
        let files = std::mem::take(&mut self.state.lock().unwrap().files);
        let mut files: Vec<OpenFile> = files.into_values().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for file in files {
            self.write(json!({"op": "close", "path": file.path, "mode": mode(file.flags), "bytes_read": file.read, "bytes_written": file.written, "status": "cut"}));
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

#[cfg(test)]
mod tests;
