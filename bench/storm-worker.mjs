// Entry of the bootstrap storm's load worker: worker threads do not inherit the main thread's
// TypeScript loader, so register it here before loading the TypeScript module that runs the load.
import { register } from 'tsx/esm/api';

register();
await import('./storm-clients.ts');
