// TLS for UltraCloud servers. The server asks every client for a certificate and verifies it
// against the CA bundle, but does not require one: operators authenticate with bearer tokens over
// plain server-authenticated TLS, agents with their node certificate (mTLS), on the same port.
// A certificate that does not verify is treated as none — grpc-js exposes a peer certificate to
// handlers (`getAuthContext()`) only when it verified. The identity can be replaced while
// serving, so a renewed certificate applies to new connections without a restart.
import { ServerCredentials } from '@grpc/grpc-js';

export interface ServerIdentity {
  /** PEM certificate chain, leaf first. */
  readonly certificatePem: string | Buffer;
  /** PEM private key of the leaf. Secret. */
  readonly privateKeyPem: string | Buffer;
}

export class ServerTlsCredentials extends ServerCredentials {
  private readonly clientCa: Buffer | undefined;

  /** `clientCaPem`: bundle that client certificates are verified against; omit to ask for none. */
  constructor(identity: ServerIdentity, clientCaPem?: string | Buffer) {
    const clientCa = clientCaPem === undefined ? undefined : Buffer.from(clientCaPem);
    super(
      // Ask for a client certificate, verify it, but let the handshake through without one.
      { requestCert: clientCa !== undefined, rejectUnauthorized: false },
      contextOptions(identity, clientCa),
    );
    this.clientCa = clientCa;
  }

  /** Serves `identity` to every connection made from now on. */
  replaceIdentity(identity: ServerIdentity): void {
    this.updateSecureContextOptions(contextOptions(identity, this.clientCa));
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptions(identity: ServerIdentity, clientCa: Buffer | undefined) {
  return {
    cert: Buffer.from(identity.certificatePem),
    key: Buffer.from(identity.privateKeyPem),
    ...(clientCa ? { ca: clientCa } : {}),
  };
}
