// The verified TLS client certificate of a call, made visible to nice-grpc middleware.
//
// nice-grpc's CallContext carries metadata, the peer address and a signal, but not grpc-js's
// `call.getAuthContext()`, which is where the client certificate is. A grpc-js server
// interceptor does see the call: for every incoming call it removes any client-sent value of
// the reserved metadata key below and, when the connection's client certificate verified against
// the server's CA (`TLSSocket.authorized`; grpc-js reports no certificate otherwise), puts the
// certificate's subject CN and SHA-256 fingerprint there. The auth middleware then reads them from
// `context.metadata` like any header, knowing no client can have set them.
import {
  type Metadata as GrpcMetadata,
  type ServerInterceptingCallInterface,
  ServerInterceptingCall,
  type ServerInterceptor,
} from '@grpc/grpc-js';

/** Reserved metadata keys; never trusted from the wire (the interceptor overwrites them). */
export const CLIENT_CERTIFICATE_CN_KEY = 'x-ultracloud-client-cert-cn';
export const CLIENT_CERTIFICATE_FINGERPRINT_KEY = 'x-ultracloud-client-cert-sha256';

/** What the server knows about a client certificate that chains to its CA. */
export interface VerifiedClientCertificate {
  /** Subject common name; for node certificates the node_id. */
  readonly commonName: string;
  /** SHA-256 fingerprint, colon-separated hex as Node prints it. */
  readonly fingerprint256: string;
}

/** The connection's client certificate, if it verified against the server's CA and names one CN. */
export function verifiedCertificate(call: Pick<ServerInterceptingCallInterface, 'getAuthContext'>): VerifiedClientCertificate | undefined {
  const peer = call.getAuthContext().sslPeerCertificate;
  const cn = peer?.subject?.CN;
  // A certificate may carry several CNs (Node gives an array then); it names no single node.
  if (!peer || typeof cn !== 'string' || cn === '') return undefined;
  return { commonName: cn, fingerprint256: peer.fingerprint256 };
}

function stamp(metadata: GrpcMetadata, certificate: VerifiedClientCertificate | undefined): GrpcMetadata {
  metadata.remove(CLIENT_CERTIFICATE_CN_KEY);
  metadata.remove(CLIENT_CERTIFICATE_FINGERPRINT_KEY);
  if (certificate) {
    metadata.set(CLIENT_CERTIFICATE_CN_KEY, certificate.commonName);
    metadata.set(CLIENT_CERTIFICATE_FINGERPRINT_KEY, certificate.fingerprint256);
  }
  return metadata;
}

/**
 * grpc-js server interceptor; `lib/grpc/server.ts` installs it on every server. Methods served
 * directly (direct-stream.ts) read the certificate from the call themselves and are passed by.
 */
export function clientCertificateInterceptor(directPaths: ReadonlySet<string> = new Set()): ServerInterceptor {
  return (method, call) =>
    directPaths.has(method.path)
      ? (call as ServerInterceptingCall)
      : new ServerInterceptingCall(call, {
          start(next) {
            next({
              onReceiveMetadata(metadata, forward) {
                forward(stamp(metadata, verifiedCertificate(call)));
              },
            });
          },
        });
}

/** The certificate the interceptor vouched for, from nice-grpc's call metadata. */
export function clientCertificateFrom(metadata: { get(key: string): unknown }): VerifiedClientCertificate | undefined {
  const commonName = metadata.get(CLIENT_CERTIFICATE_CN_KEY);
  if (typeof commonName !== 'string' || commonName === '') return undefined;
  const fingerprint = metadata.get(CLIENT_CERTIFICATE_FINGERPRINT_KEY);
  return { commonName, fingerprint256: typeof fingerprint === 'string' ? fingerprint : '' };
}
