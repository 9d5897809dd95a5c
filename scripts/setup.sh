#!/usr/bin/env bash
# One-time (and idempotent) setup of a Debian 12 host for sshvisor: the
# Debian packages it runs, its npm dependencies, the build, the default
# guest image. Run as root to install packages; otherwise it prints the
# exact apt-get line to run and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime: QEMU, the image's ingredients, the tools that make disks.
# Tests and benchmarks: OpenSSH client and server, paramiko, rsync, tmux, ssh-audit (the algorithm audit test);
# golang-go builds the guest agent (agent/, standard library only); gcc and binutils the tiny test kernel (test/fixtures/tiny-kernel).
# chromium: the web console test drives it with playwright-core (headless, loopback only).
PACKAGES=(
  qemu-system-x86 qemu-utils busybox-static golang-go openssh-sftp-server
  openssh-client e2fsprogs cpio kmod rsync gcc libc6-dev
  openssh-server python3-paramiko procps tmux binutils chromium ssh-audit
  mmdebstrap umoci skopeo
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "sshvisor setup: these Debian packages are missing; install them, then run npm run setup again:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A root server runs every VM's QEMU as this unprivileged user (README: Isolation).
if [[ $(id -u) -eq 0 ]] && ! getent passwd sshvisor-vm >/dev/null; then
  echo "setup: creating the system user sshvisor-vm"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sshvisor-vm
fi

# The guest kernel comes from `apt-get download`, which needs package lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "sshvisor setup: apt has no package lists; run: sudo apt-get update" >&2
    exit 1
  fi
  apt-get update -q
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent

node dist/src/cli/main.js image build --if-missing
echo "setup: done. Start the server with: npm start"
