//! Reading SFTP requests and replies: each request kept until its answer, each answer
//! turned into the audit's lines and the open files' counts.

use super::*;

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
pub(super) enum Pending {
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
    /// Counted as written once the server says it was.
    Write {
        handle: Vec<u8>,
        length: u64,
    },
}

#[derive(Debug)]
pub(super) struct OpenFile {
    pub(super) path: String,
    pub(super) flags: u32,
    pub(super) read: u64,
    pub(super) written: u64,
}

/// One SFTP session's audit: both directions' framers and what links them.
pub(super) fn request(
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
        // handle, offset, then the data's length (the data itself was not kept); counted
        // when the server answers OK (a refused WRITE wrote nothing).
        WRITE => f
            .bytes()
            .filter(|handle| files.contains_key(*handle))
            .map(<[u8]>::to_vec)
            .zip(f.u64().and(f.u32()))
            .map(|(handle, length)| Pending::Write {
                handle,
                length: u64::from(length),
            }),
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

pub(super) fn reply(
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
                Some(Pending::Write { handle, length }) => {
                    if let Some(file) = files.get_mut(&handle)
                        && status == "ok"
                    {
                        file.written += length;
                    }
                    return;
                }
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
pub(super) fn mode(flags: u32) -> String {
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
