// Process lifecycle for daemons: stop cleanly on SIGTERM/SIGINT, force on a second signal.
import type { Logger } from './log.js';

export function stopOnSignals(stop: () => Promise<void>, logger: Logger): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ event: 'process.forced_exit', signal });
      process.exit(1);
    }
    signalled = true;
    logger.info({ event: 'process.signal', signal });
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ event: 'process.stop_failed', err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
