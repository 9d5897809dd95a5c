import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testImage } from './test-image.js';

/**
 * A copy of the test image whose guest agent is a shell script that
 * misbehaves, chosen by the VM's name (its prefix):
 *
 * - `garbage*`: writes random bytes to the agent port, forever;
 * - `silent*`: opens the port and never says a word;
 * - `huge*`: answers the handshake properly, then sends a frame header
 *   announcing a 4 GiB payload, and zeros after it.
 *
 * Linux unpacks concatenated cpio archives in order, so the script rides in
 * a second archive appended to the real initramfs, over the real agent.
 * Returns the image directory; `dispose` removes it.
 */
export async function hostileImage(): Promise<{ dir: string; dispose(): void }> {
  const base = await testImage();
  const dir = mkdtempSync(join(tmpdir(), 'sshvisor-hostile-image-'));
  const stage = join(dir, 'stage');
  mkdirSync(join(stage, 'usr', 'sbin'), { recursive: true });
  writeFileSync(join(stage, 'usr', 'sbin', 'sshvisor-agent'), hostileScript());
  chmodSync(join(stage, 'usr', 'sbin', 'sshvisor-agent'), 0o755);
  const cpio = execFileSync('sh', ['-c', 'printf "usr\\nusr/sbin\\nusr/sbin/sshvisor-agent\\n" | cpio -o -H newc --quiet -R 0:0 | gzip -9'], { cwd: stage });
  copyFileSync(base.kernel, join(dir, 'vmlinuz'));
  copyFileSync(base.initrd!, join(dir, 'initrd.img'));
  appendFileSync(join(dir, 'initrd.img'), cpio);
  writeFileSync(join(dir, 'manifest.json'), readFileSync(join(base.kernel, '..', 'manifest.json')));
  rmSync(stage, { recursive: true, force: true });
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Octal escapes for printf(1) of busybox sh. */
const octal = (b: Buffer): string => [...b].map((x) => `\\${x.toString(8).padStart(3, '0')}`).join('');

function hostileScript(): string {
  // A well-formed HELLO_ACK (docs/guest-protocol.md) around the gateway's nonce, then a DATA header of 4 GiB - 1.
  const json = Buffer.from('{"agent":"hostile","minVersion":1,"maxVersion":1}');
  const ackHead = Buffer.alloc(12 + 10);
  ackHead.writeUInt32BE(26 + json.length, 0);
  ackHead[4] = 0x02;
  ackHead.write('sshvAGNT', 12, 'latin1');
  ackHead.writeUInt16BE(1, 20);
  const huge = Buffer.alloc(12);
  huge.writeUInt32BE(0xffffffff, 0);
  huge[4] = 0x30;
  huge.writeUInt32BE(1, 8);
  return `#!/bin/sh
# A hostile sshvisor-agent for the gateway's robustness tests (test/helpers/hostile-image.ts).
name=$(sed -n 's/.*sshvisor\\.name=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
port=
while [ -z "$port" ]; do
  for d in /sys/class/virtio-ports/*; do
    [ "$(cat "$d/name" 2>/dev/null)" = org.sshvisor.agent.0 ] && port="/dev/\${d##*/}"
  done
  [ -n "$port" ] || usleep 100000
done
echo "hostile-agent: $name on $port"
case "$name" in
  garbage*) while :; do head -c 65536 /dev/urandom > "$port"; done ;;
  silent*) exec sleep 100000 < "$port" ;;
  huge*)
    head -c 40 "$port" > /tmp/hello
    tail -c 16 /tmp/hello > /tmp/nonce
    { printf '${octal(ackHead)}'; cat /tmp/nonce; printf '%s' '${json.toString()}'; printf '${octal(huge)}'; head -c 1000000 /dev/zero; } > "$port"
    exec sleep 100000 < "$port" ;;
esac
`;
}
