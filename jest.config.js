// Jest runs TypeScript through SWC (decorators and their metadata included). PGlite loads its
// WebAssembly through dynamic import(), which jest only allows with --experimental-vm-modules
// (set in the npm scripts).
/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts', '<rootDir>/packages/*/test/**/*.spec.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true },
          target: 'es2022',
        },
        module: { type: 'commonjs' },
      },
    ],
  },
  // The client package is tested (and the server runs in tests) from its TypeScript source.
  moduleNameMapper: {
    '^src/(.*)$': '<rootDir>/src/$1',
    '^@mailroom/client$': '<rootDir>/packages/client/src/index.ts',
    '^@mailroom/client/protocol$': '<rootDir>/packages/client/src/protocol/index.ts',
  },
  testTimeout: 60000,
};
