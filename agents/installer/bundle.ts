// Downloads the install bundle (the flake source, tar.gz or tar.zst) over http(s) and checks its
// SHA-256 while streaming, so a tampered or truncated bundle is refused before anything is
// unpacked. The install token is sent only to the deployer that issued it, never to a mirror.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { dirname } from 'node:path';

export interface BundleDownload {
  readonly url: string;
  readonly destination: string;
  readonly expectedSha256: string;
  /** Sent as `authorization: Bearer …` when set. */
  readonly bearer?: string;
  /** PEM CA bundle for https URLs served by the deployer. */
  readonly ca?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

const MAX_REDIRECTS = 5;

function request(url: URL, options: BundleDownload): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? httpsGet : url.protocol === 'http:' ? httpGet : undefined;
    if (!get) {
      reject(new BundleError(`plan.bundle_url: unsupported scheme ${url.protocol} (http or https)`));
      return;
    }
    const req = get(url, {
      headers: options.bearer ? { authorization: `Bearer ${options.bearer}` } : {},
      ...(options.ca ? { ca: options.ca } : {}),
      timeout: options.timeoutMs ?? 600_000,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    req.on('response', resolve);
    req.on('timeout', () => req.destroy(new BundleError(`bundle download from ${url.host} timed out`)));
    req.on('error', reject);
  });
}

/** Downloads to `destination` and returns its size; removes the file and throws on any mismatch. */
export async function downloadBundle(options: BundleDownload): Promise<{ sizeBytes: number; sha256: string }> {
  let url = new URL(options.url);
  const origin = url.origin;
  await mkdir(dirname(options.destination), { recursive: true, mode: 0o700 });
  for (let hop = 0; ; hop++) {
    // Credentials follow a redirect only within the origin they were meant for.
    const response = await request(url, url.origin === origin ? options : { ...options, bearer: undefined });
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      if (hop >= MAX_REDIRECTS) throw new BundleError(`bundle download: more than ${MAX_REDIRECTS} redirects`);
      url = new URL(response.headers.location, url);
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw new BundleError(`bundle download from ${url.host}${url.pathname} failed: HTTP ${status}`);
    }
    const hash = createHash('sha256');
    let sizeBytes = 0;
    const out = createWriteStream(options.destination, { mode: 0o600 });
    try {
      await new Promise<void>((resolve, reject) => {
        response.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          sizeBytes += chunk.length;
        });
        response.on('error', reject);
        out.on('error', reject);
        out.on('finish', resolve);
        response.pipe(out);
      });
    } catch (err) {
      await rm(options.destination, { force: true });
      throw err;
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== options.expectedSha256.toLowerCase()) {
      await rm(options.destination, { force: true });
      throw new BundleError(`bundle sha256 mismatch: the plan says ${options.expectedSha256}, the download (${sizeBytes} bytes) is ${sha256}`);
    }
    return { sizeBytes, sha256 };
  }
}
