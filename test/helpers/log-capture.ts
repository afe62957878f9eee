// A logger whose lines (pino JSON, as the daemons write them) are kept for assertions.
import { Writable } from 'node:stream';
import type { LogLevel } from '../../lib/config/settings.js';
import { createLogger, type Logger } from '../../lib/log.js';

export interface CapturedLog {
  /** Every line written so far, as written. */
  readonly lines: string[];
  readonly logger: Logger;
  /** The lines parsed as JSON. */
  events(): Record<string, unknown>[];
}

export function captureLog(level: LogLevel = 'debug'): CapturedLog {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, logger: createLogger({ destination, level }), events: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
