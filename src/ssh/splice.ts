import type { Duplex } from 'node:stream';

/**
 * Join two byte streams both ways, with back-pressure: an end (EOF) on one
 * side ends the other's writing side (a half-close, as sshd does for
 * forwarded connections), and either one closing closes both. Errors close
 * both and are not rethrown.
 */
export function splice(a: Duplex, b: Duplex, onClose?: () => void): void {
  a.pipe(b);
  b.pipe(a);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    a.destroy();
    b.destroy();
    onClose?.();
  };
  for (const s of [a, b]) {
    s.once('close', close);
    s.on('error', close);
  }
}
