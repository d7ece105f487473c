// Type-aware lint: the rules that catch the async mistakes an agent runtime cannot afford.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// Dependencies point one way (docs/architecture.md, "Modules"). Each module lists what it may never
// import; a rule per direction keeps the picture true as the code grows.
const MODULES = ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'llm', 'agents', 'agents/runtime', 'events', 'tools', 'gateway', 'api', 'admin', 'metrics', 'logging', 'dashboard'];
const MAY_IMPORT = {
  config: [],
  common: [],
  telemetry: ['config', 'common'],
  database: ['config', 'common', 'telemetry'],
  cluster: ['config', 'common', 'database'],
  sessions: ['config', 'common', 'telemetry', 'database', 'cluster'],
  mailbox: ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions'],
  llm: ['config', 'common', 'telemetry'],
  agents: ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'llm'],
  events: ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'agents'],
  tools: ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'llm', 'agents', 'events'],
  'agents/runtime': ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'llm', 'agents', 'events', 'tools'],
  gateway: ['config', 'common', 'telemetry', 'database', 'cluster', 'sessions', 'mailbox', 'llm', 'agents', 'events', 'tools'],
  api: ['config', 'common', 'gateway'],
};
const boundaries = Object.entries(MAY_IMPORT).map(([module, allowed]) => {
  const forbidden = MODULES.filter(
    (m) => m !== module && !allowed.includes(m) && !(module === 'agents/runtime' && m === 'agents'),
  );
  return {
    files: [`src/${module}/**/*.ts`],
    ignores: module === 'agents' ? ['src/agents/runtime/**'] : [],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: forbidden.map((m) => ({
            group: [`src/${m}`, `src/${m}/**`],
            message: `src/${module} may not depend on src/${m} (docs/architecture.md, "Modules").`,
          })),
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'data/', 'eslint.config.mjs', 'jest.config.js', 'src/dashboard/public/', 'packages/*/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  prettier,
  {
    languageOptions: {
      globals: { ...globals.node, ...globals.jest },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      curly: ['error', 'all'],
    },
  },
  ...boundaries,
  {
    // The client package is published on its own: it may not reach into the server.
    files: ['packages/*/src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['src/**', '**/src/**'], message: 'The client package may not import the server.' }] }],
    },
  },
  // Plain Node scripts that run before any build: no TypeScript project, so no type-aware rules.
  { files: ['scripts/**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  {
    // Plain JavaScript outside every tsconfig: the examples, the package's build script and bin.
    files: ['**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['packages/*/bin/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['test/**/*.ts', 'src/**/*.spec.ts', 'bench/**/*.ts', 'packages/*/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
