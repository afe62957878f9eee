// Where the compiled contract lives. `npm run generate` writes it next to the generated code.
import { fileURLToPath } from 'node:url';

export const REFLECTION_IMAGE_PATH = fileURLToPath(new URL('../../gen/ultracloud.binpb', import.meta.url));

/** ts-proto's generic definitions carry `fullName`; grpc-js style ones only paths. */
export function serviceFullName(definition: object): string {
  const full = (definition as { fullName?: unknown }).fullName;
  if (typeof full === 'string') return full;
  const first = Object.values(definition as Record<string, { path?: string }>)[0];
  const path = first?.path;
  if (!path) throw new Error('service definition has neither fullName nor method paths');
  return path.split('/')[1] as string;
}
