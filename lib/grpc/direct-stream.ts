// Bidi methods served straight on grpc-js, for streams held by the thousand: agents' streams
// live for days, carry a heartbeat every few seconds and receive a message now and then. Served
// through nice-grpc, each such stream keeps a chain of async generators (one per middleware, the
// request and response adapters) and a context per layer alive for its whole life, and every
// message passes through all of them. Here the shared concerns run once per call instead, at its
// start and end, with the same code the middleware uses: the access policy and denial reports
// (auth.ts), the finished-call log line and status mapping (middleware.ts), the RPC metrics
// (metrics.ts), and UNAVAILABLE for every open stream when the server stops. Messages go to
// grpc-js as they are written and come from it as they are read, with nothing in between.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { AbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc';
import type { Logger } from '../log.js';
import type { CallMeter } from '../metrics.js';
import { type AgentRule, bearerFrom, type CallAuthorizer, checkAgentMessage, type Principal } from './auth.js';
import { verifiedCertificate } from './client-certificate.js';
import { logCallEnd } from './middleware.js';
import { toServerError } from './status.js';

/** One call of a directly served bidi method, as its handler sees it. */
export interface DirectCall<Request, Response> {
  readonly method: string;
  readonly peer: string;
  readonly principal: Principal;
  /** The server's logger for this method (shared by its calls; add per-call fields to each line). */
  readonly log: Logger;
  /**
   * The client's next message; undefined once the client has closed its side or the call has
   * ended (cancelled, ended by `end`, server stopping). Messages wait in a short queue while the
   * handler is busy; beyond it grpc-js stops reading, and the client's flow control holds it.
   */
  read(): Promise<Request | undefined>;
  /** Sends a message (grpc-js serialises and buffers it); ignored once the call has ended. */
  write(message: Response): void;
  /**
   * Sends a message already encoded (protobuf binary of the method's response type), for a
   * message sent to many streams whose encoding the caller builds once; ignored once ended.
   */
  writeEncoded(message: EncodedMessage): void;
  /**
   * Ends the call: OK without an argument, otherwise with the error's status (domain errors
   * mapped as for every handler). Only the first end counts; a pending read returns undefined.
   */
  end(error?: unknown): void;
  /** True once the call has ended, by either side. */
  readonly ended: boolean;
}

/** A response message in its protobuf encoding, written to the stream as it is. */
export class EncodedMessage {
  constructor(readonly bytes: Uint8Array) {}
}

/** grpc-js wants a Buffer from a serializer; a view of the encoder's bytes, not a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The response serializer of a directly served method: messages already encoded pass as they
 * are, the rest go through the method's own serializer.
 */
export function directResponseSerializer(serialize: (message: unknown) => Uint8Array): (message: unknown) => Buffer {
  return (message) => (message instanceof EncodedMessage ? asBuffer(message.bytes) : asBuffer(serialize(message)));
}

/** Runs one call; when it returns the call ends OK (unless ended already), when it throws, with the error's status. */
export type DirectBidiHandler<Request, Response> = (call: DirectCall<Request, Response>) => Promise<void>;

export interface DirectStreamDeps {
  readonly authorizer: CallAuthorizer;
  readonly meter: CallMeter;
  readonly logger: Logger;
  /** Aborted when the server stops: every open call ends with UNAVAILABLE. */
  readonly stopping: AbortSignal;
}

/** Messages read ahead of the handler before grpc-js is asked to stop reading. */
const READ_AHEAD = 8;
const UNAVAILABLE_ON_STOP = new ServerError(Status.UNAVAILABLE, 'server is shutting down');

class Call<Request, Response> implements DirectCall<Request, Response> {
  principal: Principal = { kind: 'anonymous' };
  ended = false;
  private readonly queue: Request[] = [];
  private clientDone = false;
  private waiting: ((m: Request | undefined) => void) | undefined;
  agentRule: AgentRule | undefined;

  constructor(
    private readonly stream: ServerDuplexStream<Request, Response>,
    readonly method: string,
    readonly peer: string,
    readonly log: Logger,
    private readonly finished: (error: unknown) => void,
  ) {}

  /** Watches for the client going away; from the call's first moment, authorisation included. */
  watch(): void {
    // The client cancelled, or the connection went away.
    this.stream.on('cancelled', () => this.close(undefined, true));
    this.stream.on('error', () => this.close(undefined, true));
  }

  /** Reads the client's messages; called once the call is authorised. */
  listen(): void {
    const s = this.stream;
    s.on('data', (m: Request) => {
      if (this.ended) return;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(m);
        return;
      }
      this.queue.push(m);
      if (this.queue.length >= READ_AHEAD) s.pause();
    });
    s.on('end', () => {
      this.clientDone = true;
      this.release();
    });
  }

  read(): Promise<Request | undefined> {
    const next = this.queue.shift();
    if (next !== undefined) {
      if (this.queue.length < READ_AHEAD && this.stream.isPaused()) this.stream.resume();
      try {
        checkAgentMessage(this.agentRule, this.principal, this.method, next);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve(next);
    }
    if (this.ended || this.clientDone) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.waiting = (m) => {
        if (m === undefined) return resolve(undefined);
        try {
          checkAgentMessage(this.agentRule, this.principal, this.method, m);
          resolve(m);
        } catch (err) {
          reject(err);
        }
      };
    });
  }

  write(message: Response): void {
    if (this.ended) return;
    this.stream.write(message);
  }

  writeEncoded(message: EncodedMessage): void {
    if (this.ended) return;
    // The serializer (directResponseSerializer) passes it through.
    this.stream.write(message as unknown as Response);
  }

  end(error?: unknown): void {
    this.close(error, false);
  }

  private release(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.(undefined);
  }

  /** Ends the call once; `gone`: the client is no longer there to be told. */
  close(error: unknown, gone: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.length = 0;
    this.release();
    if (!gone) {
      const mapped = error === undefined ? undefined : toServerError(error);
      if (mapped) this.stream.emit('error', { code: mapped.error.code, details: mapped.error.details });
      // An abort the handler passed on (toServerError leaves those alone) is no success.
      else if (error !== undefined) this.stream.emit('error', { code: Status.CANCELLED, details: 'cancelled' });
      else this.stream.end();
    }
    this.finished(gone ? 'cancelled' : error);
  }
}

/**
 * A grpc-js handler for one bidi method: authorises the call (policy, denial reports), runs the
 * handler, and on the call's end logs one line, records the metrics and maps the status.
 */
export function directBidiHandler<Request, Response>(method: string, handler: DirectBidiHandler<Request, Response>, deps: DirectStreamDeps) {
  const log = deps.logger.child({ rpc: method });
  const open = new Set<Call<Request, Response>>();
  deps.stopping.addEventListener('abort', () => {
    for (const c of [...open]) c.end(UNAVAILABLE_ON_STOP);
  });
  return (stream: ServerDuplexStream<Request, Response>): void => {
    const started = process.hrtime.bigint();
    const finish = deps.meter(method, true, true);
    const peer = stream.getPeer();
    const authorization = stream.metadata.get('authorization')[0];
    const request = { method, bearer: bearerFrom(typeof authorization === 'string' ? authorization : undefined), peer };
    let authorised = false;
    const call: Call<Request, Response> = new Call(stream, method, peer, log, (error) => {
      open.delete(call);
      if (error === 'cancelled') {
        logCallEnd(log, new AbortError(), started, peer);
        finish('CANCELLED');
        return;
      }
      if (error !== undefined && authorised) deps.authorizer.handlerFailed(request, call.principal, error);
      const mapped = logCallEnd(log, error, started, peer);
      finish(mapped ? (Status[mapped.code] ?? 'UNKNOWN') : error === undefined ? 'OK' : 'CANCELLED');
    });
    if (deps.stopping.aborted) {
      call.end(UNAVAILABLE_ON_STOP);
      return;
    }
    call.watch();
    open.add(call);
    deps.authorizer.authorize(request, verifiedCertificate(stream)).then(
      (principal) => {
        if (call.ended) return;
        authorised = true;
        call.principal = principal;
        call.agentRule = deps.authorizer.agentRule(method, principal);
        call.listen();
        handler(call).then(
          () => call.end(),
          (err: unknown) => call.end(err),
        );
      },
      (err: unknown) => call.end(err),
    );
  };
}
