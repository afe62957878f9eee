// Cluster PKI: the CA, per-node credentials, bearer tokens and private keys sealed at rest.
export * from './ca.js';
export * from './issue.js';
export * from './sealed.js';
export * from './tokens.js';
export * from './server-certificate.js';
