/**
 * The small init system of the default guest image: busybox init runs rcS
 * once, keeps a root shell on the serial console, and runs rcK at poweroff.
 * sshvisor-agent starts first, so the gateway can reach the guest as soon as
 * it exists. A booted guest learns its name from the kernel command line; a
 * clone of a template from the agent's `identity` request (see
 * guest-contract.ts and docs/guest-protocol.md).
 */
import { GUEST_IDENTITY_FILE, GUEST_INIT_MARKER, GUEST_READY_MARKER, GUEST_TEMPLATE_MARKER, GUEST_IP, ROOTFS_KERNEL_ARG, SESSION_ROOT, SESSION_ROOT_FILE } from './guest-contract.js';

export interface GuestFile {
  content: string;
  mode: number;
}

// A root filesystem image (docs/images.md): the VM's disk is the whole
// image, copy-on-write on the host. It is mounted at ${SESSION_ROOT} with the
// kernel's filesystems, and the agent runs every session chrooted there; the
// init, the agent and the console shell stay in the initramfs. The image's
// own files are left as they are: its /run is a fresh tmpfs, the default
// image's tools (scp, rsync, sftp-server, for an image without them) are
// reached read-only under its /run/sshvisor/guest, and only a mount point
// the image lacks is made (with --allow-internet, an /etc/resolv.conf that is
// missing or a symlink becomes an empty file to mount QEMU's DNS over).
const mountRootfs = `mount_rootfs() {
  r=${SESSION_ROOT}
  mkdir -p $r
  mkdir -p /run/sshvisor
  if ! mount -t ext4 -o noatime /dev/vda $r; then
    echo "sshvisor-guest: could not mount the root filesystem image"
    # The agent then refuses sessions with a reason, rather than run them in the initramfs.
    echo unmounted > ${SESSION_ROOT_FILE}
    return
  fi
  # A VM's disk may be larger than its image's filesystem: grow it to the disk (online; a no-op when equal).
  resize2fs /dev/vda > /dev/null 2>&1 || echo "sshvisor-guest: could not grow the root filesystem"
  for d in proc sys dev run tmp; do [ -d $r/$d ] || mkdir -p $r/$d; done
  mount -t proc proc $r/proc
  mount -t sysfs sysfs $r/sys
  mount --rbind /dev $r/dev
  mount -t tmpfs -o mode=755 tmpfs $r/run
  mkdir -p $r/run/sshvisor/guest
  mount --bind / $r/run/sshvisor/guest && mount -o remount,bind,ro $r/run/sshvisor/guest
  if [ -e /sys/class/net/eth0 ]; then
    [ -f $r/etc/resolv.conf ] && [ ! -L $r/etc/resolv.conf ] || { rm -f $r/etc/resolv.conf; : > $r/etc/resolv.conf; }
    mount --bind /etc/resolv.conf $r/etc/resolv.conf
  fi
  echo $r > ${SESSION_ROOT_FILE}
}
`;

const rcS = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
${mountRootfs}mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
echo "${GUEST_INIT_MARKER}"
# Every Magic SysRq function, from the serial console's break (ssh -t NAME+console@host, then ~B): the VM owner's debugging tool.
echo 1 > /proc/sys/kernel/sysrq

# First: the agent, the gateway's way in. It waits for its virtio-serial port (the module below).
setsid /usr/sbin/sshvisor-agent < /dev/null > /dev/console 2>&1 &

while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "sshvisor-guest: could not load module $m"
done < /etc/sshvisor/modules

name=sshvisor
template=
rootfs=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sshvisor.name=*) name="\${arg#sshvisor.name=}" ;;
    sshvisor.template=1) template=1 ;;
    ${ROOTFS_KERNEL_ARG}) rootfs=1 ;;
  esac
done

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add ${GUEST_IP}/24 dev eth0
  ip route add default via 10.0.2.2
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi

# A template stops here and is snapshotted; each clone resumes here and waits
# for its identity, which the gateway sends through the agent (the agent also
# sets the clock and reseeds the RNG, which the clone shares with the template).
if [ -n "$template" ]; then
  echo "${GUEST_TEMPLATE_MARKER}"
  while [ ! -s ${GUEST_IDENTITY_FILE} ]; do usleep 20000; done
  while read -r kv; do
    case "$kv" in
      hostname=*) name="\${kv#hostname=}" ;;
    esac
  done < ${GUEST_IDENTITY_FILE}
  # The template saw a placeholder disk: forget whatever it cached of it.
  blockdev --flushbufs /dev/vda 2> /dev/null
  echo "sshvisor-guest: identity received"
fi
hostname "$name"
echo "$name" > /etc/hostname
echo "127.0.0.1 localhost $name" > /etc/hosts

if [ -n "$rootfs" ]; then
  mount_rootfs
else
  # The per-VM persistent disk holds /root.
  if [ -b /dev/vda ]; then
    mount -t ext4 -o noatime /dev/vda /persist || echo "sshvisor-guest: could not mount the persistent disk; /root is in RAM"
  else
    echo "sshvisor-guest: no persistent disk; /root is in RAM"
  fi
  mkdir -p /persist/root
  mount --bind /persist/root /root
  chmod 700 /root
fi

# QMP system_powerdown arrives as an ACPI power button press.
acpid

mkdir -p /var/log
echo "${GUEST_READY_MARKER}"
`;

const rcK = `#!/bin/sh
sync
if [ -s ${SESSION_ROOT_FILE} ]; then
  r=${SESSION_ROOT}
  for m in run/sshvisor/guest run dev/pts dev proc sys etc/resolv.conf; do umount -l $r/$m 2>/dev/null; done
  mount -o remount,ro $r 2>/dev/null
  sync
fi
umount /root 2>/dev/null
umount /persist 2>/dev/null || mount -o remount,ro /persist 2>/dev/null
sync
echo "sshvisor-guest: stopped"
`;

const inittab = `::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/poweroff
::shutdown:/etc/init.d/rcK
`;

const profile = `export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
[ -n "$TERM" ] || export TERM=vt100
PS1='\\u@\\h:\\w\\$ '
cd "$HOME" 2>/dev/null
`;

/** Files of the guest's root filesystem, by absolute path; `modules` is one module name per line, load order. */
export function guestFiles(moduleOrder: readonly string[]): Record<string, GuestFile> {
  return {
    '/etc/init.d/rcS': { content: rcS, mode: 0o755 },
    '/etc/init.d/rcK': { content: rcK, mode: 0o755 },
    '/etc/inittab': { content: inittab, mode: 0o644 },
    '/etc/profile': { content: profile, mode: 0o644 },
    '/etc/passwd': { content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', mode: 0o644 },
    '/etc/shadow': { content: 'root:*:19000:0:99999:7:::\n', mode: 0o600 },
    '/etc/group': { content: 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n', mode: 0o644 },
    '/etc/shells': { content: '/bin/sh\n/bin/ash\n', mode: 0o644 },
    '/etc/acpi/PWRF/00000080': { content: '#!/bin/sh\npoweroff\n', mode: 0o755 },
    '/etc/sshvisor/modules': { content: moduleOrder.join('\n') + '\n', mode: 0o644 },
  };
}
