import type { Writable } from 'node:stream';

/**
 * QEMU hands a serial console over a few bytes at a time; written one by
 * one, every chunk becomes its own encrypted SSH packet per viewer (the
 * gateway spent about 60% of a core on that at 0.18 MiB/s). This gathers
 * what arrives within one event-loop turn, up to `maxBytes`, into one write.
 * It returns false while the stream reports backpressure, like write().
 */
export function coalescingWriter(stream: Writable, maxBytes = 32 * 1024): (data: Buffer) => boolean {
  let pending: Buffer[] = [];
  let size = 0;
  let scheduled = false;
  let blocked = false;
  const flush = (): void => {
    scheduled = false;
    if (size === 0) return;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, size);
    pending = [];
    size = 0;
    if (!stream.destroyed && !stream.writableEnded) blocked = !stream.write(data);
  };
  // Registered before anyone else's 'drain' listener, so a viewer resuming on drain sees blocked = false.
  stream.on('drain', () => (blocked = false));
  return (data) => {
    if (stream.destroyed) return true;
    pending.push(data);
    size += data.length;
    if (size >= maxBytes) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
    return !blocked;
  };
}
