// Entry of the agent-streams benchmark's load process: registers the TypeScript loader, then
// runs the simulated agents.
import { register } from 'tsx/esm/api';

register();
await import('./agent-streams-load.ts');
