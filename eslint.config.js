// Code lint, including the architecture's import boundaries (docs/architecture.md):
// domain code stays pure, services never import each other, agents and the CLI share only
// gen/ and lib/ with the services, and lib/ depends on nothing above it.
import tseslint from 'typescript-eslint';

const grpcPackages = ['nice-grpc', 'nice-grpc-*', '@grpc/*'];
const storagePackages = ['kysely', 'kysely-*', 'pg', '@electric-sql/*'];

function restrict(patterns) {
  return { 'no-restricted-imports': ['error', { patterns }] };
}

export default tseslint.config(
  { ignores: ['node_modules/', 'gen/', 'dist/', '.ultracloud/', 'bin/*.js'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    files: ['services/*/domain/**/*.ts'],
    rules: restrict([
      { group: [...grpcPackages, ...storagePackages], message: 'domain code is pure: no gRPC or storage imports' },
      { group: ['**/rpc/**', '**/store/**', '**/lib/grpc/**', '**/lib/db/**'], message: 'domain code may not import rpc/ or store/' },
    ]),
  },
  {
    files: ['services/deployer/**/*.ts'],
    rules: restrict([{ group: ['**/services/host-controller/**', '**/services/fleet-scheduler/**', '**/agents/**', '**/cli/**'], message: 'a service imports only gen/ and lib/ from outside itself' }]),
  },
  {
    files: ['services/host-controller/**/*.ts'],
    rules: restrict([{ group: ['**/services/deployer/**', '**/services/fleet-scheduler/**', '**/agents/**', '**/cli/**'], message: 'a service imports only gen/ and lib/ from outside itself' }]),
  },
  {
    files: ['services/fleet-scheduler/**/*.ts'],
    rules: restrict([{ group: ['**/services/deployer/**', '**/services/host-controller/**', '**/agents/**', '**/cli/**'], message: 'a service imports only gen/ and lib/ from outside itself' }]),
  },
  {
    files: ['agents/**/*.ts'],
    rules: restrict([{ group: ['**/services/**', '**/cli/**'], message: 'agents talk to services over gRPC only' }]),
  },
  {
    files: ['cli/**/*.ts'],
    rules: restrict([{ group: ['**/services/**', '**/agents/**', ...storagePackages], message: 'the CLI talks to services over gRPC only' }]),
  },
  {
    files: ['lib/**/*.ts'],
    rules: restrict([{ group: ['**/services/**', '**/agents/**', '**/cli/**', '**/bin/**'], message: 'lib/ is the bottom layer' }]),
  },
);
