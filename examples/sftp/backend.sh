#!/usr/bin/env bash
# The example's SFTP server (docs/sftp.md): a real OpenSSH sshd on 127.0.0.1:10122 with the
# host key examples/keys/backend_host_ed25519, internal-sftp in a temporary root (one
# directory per user), and the gateway's key examples/keys/upstream_ed25519 as the only
# authorized key. Users alice and bob are created when missing. Needs root (sshd switches
# to the user who logs in) and openssh-server. Runs in the foreground; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
port="${PORT:-10122}"
if [ "$(id -u)" != 0 ]; then
  echo "backend.sh: run as root: sshd switches to the user who logs in" >&2
  exit 1
fi
[ -x /usr/sbin/sshd ] || { echo "backend.sh: install openssh-server" >&2; exit 1; }
for user in alice bob; do
  id -u "$user" >/dev/null 2>&1 || useradd -M -s /bin/sh "$user"
  usermod -p '*' "$user"   # not locked: sshd without PAM refuses locked accounts
done
dir="$(mktemp -d /tmp/causeway-sftp-backend.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$dir"
install -m 600 examples/keys/backend_host_ed25519 "$dir/host"
cp examples/keys/upstream_ed25519.pub "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
for user in alice bob; do
  mkdir -p "$dir/root/$user"
  chown "$user" "$dir/root/$user"
done
chmod 755 "$dir/root"
cat > "$dir/sshd_config" <<CONFIG
ListenAddress 127.0.0.1:$port
HostKey $dir/host
PidFile none
UsePAM no
StrictModes no
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers alice bob
Subsystem sftp internal-sftp -d $dir/root/%u
CONFIG
mkdir -p /run/sshd
echo "backend.sh: sshd on 127.0.0.1:$port, files under $dir/root" >&2
/usr/sbin/sshd -D -e -f "$dir/sshd_config"
