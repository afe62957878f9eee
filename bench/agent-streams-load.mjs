// Entry of the agent-streams benchmark's child processes: registers the TypeScript loader, then
// runs the module named by the first argument (the simulated agents, or the baseline server).
import { register } from 'tsx/esm/api';

register();
await import(new URL(process.argv[2] ?? './agent-streams-load.ts', import.meta.url).href);
