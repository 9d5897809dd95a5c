import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stderr: stdout stays free for command output. */
export function createLogger(level: string = process.env.SSHVISOR_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'sshvisor' } }, pino.destination(2));
}

/** A logger that drops everything, for library use and tests that don't care. */
export const silentLogger: Logger = pino({ level: 'silent' });
