//! The control API's unix socket, made so that nobody but the owner and group can ever
//! connect: bound, then given mode 0660, and only then listening (no window where the
//! umask's mode lets a connection in); in a directory nobody else can swap files in; never
//! taking over the socket of a gateway still running.

use socket2::{Domain, SockAddr, Socket, Type};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

pub(crate) fn bind(path: &Path) -> Result<tokio::net::UnixListener, String> {
    let cannot = |e: &dyn std::fmt::Display| {
        format!("admin API cannot listen on unix:{}: {e}", path.display())
    };
    safe_directory(path).map_err(|e| cannot(&e))?;
    remove_stale(path).map_err(|e| cannot(&e))?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| cannot(&e))?;
    socket
        .bind(&SockAddr::unix(path).map_err(|e| cannot(&e))?)
        .map_err(|e| cannot(&e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| cannot(&e))?;
    socket.listen(128).map_err(|e| cannot(&e))?;
    socket.set_nonblocking(true).map_err(|e| cannot(&e))?;
    let listener = std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket));
    tokio::net::UnixListener::from_std(listener).map_err(|e| cannot(&e))
}

/// The socket's directory must not let others replace what is in it (or be sticky, like
/// /tmp, where they cannot): else the path could be swapped for a symlink between bind and
/// chmod.
fn safe_directory(path: &Path) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mode = meta.mode();
    let others_may_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if others_may_write && !sticky {
        return Err(format!(
            "its directory {} is writable by group or others (mode {:o}): use a directory only the gateway's user can write, such as systemd's RuntimeDirectory",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A socket left by a gateway that is gone is replaced; one that still answers is not, and
/// nothing that is not a socket is ever removed.
fn remove_stale(path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err("a file that is not a socket is in the way".into());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err("another process is listening on it (a gateway still running?)".into());
    }
    std::fs::remove_file(path).map_err(|e| e.to_string())
}
