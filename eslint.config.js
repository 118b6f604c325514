// Lint: typescript-eslint with type information, plus the Temporal workflow sandbox rules.
import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';

/**
 * One direction of dependencies: the HTTP edge (gateway/) and the Temporal side (workflows/) both
 * stand on core/ (domain and persistence), which stands on connectors/, which stand on the connector
 * SDK (packages/connector-sdk). Nothing imports upwards; the edge reaches Temporal only through the
 * workflows' typed client (workflows/client.ts). Import specifiers are relative, so each rule is a
 * pattern over `../` paths that leave the folder.
 */
const UP = '^(\\.\\./)+';
const DIRECTION = {
  'core/**/*.ts': [
    { regex: `${UP}(gateway|workflows|scripts|test)(/|$)`, message: 'core/ is imported by the edge and the Temporal side, never the other way round' },
  ],
  'gateway/**/*.ts': [
    { regex: `${UP}workflows/(?!client\\.js$)`, message: 'the gateway reaches Temporal only through workflows/client.ts; shared code belongs in core/' },
    { regex: `${UP}(scripts|test)(/|$)`, message: 'product code does not import scripts or tests' },
  ],
  'workflows/**/*.ts': [
    { regex: `${UP}(gateway|scripts|test)(/|$)`, message: 'workflows must not import gateway code; shared code belongs in core/' },
  ],
  'connectors/**/*.ts': [
    { regex: `${UP}(core|gateway|workflows|scripts|test)(/|$)`, message: 'connectors see only the connector SDK (@scim-gateway/connector-sdk), as plugins do' },
  ],
  'packages/*/src/**/*.ts': [{ regex: '^(\\.\\./){2,}', message: 'a package imports nothing outside itself' }],
};

/** Files that run inside Temporal's deterministic workflow sandbox. */
const WORKFLOW_FILES = ['workflows/**/*.ts'];
const NOT_WORKFLOW_FILES = ['workflows/activities.ts', 'workflows/activities/**', 'workflows/worker.ts', 'workflows/client.ts'];

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', '.tap/**', 'coverage/**', 'openapi/**', 'dist/**', 'packages/*/dist/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // Fastify plugins and handlers are async by contract, with or without an await inside.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests and scripts poke at loosely typed JSON and driver rows.
    files: ['test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      // tap tracks its subtests itself; `t.test(...)` is awaited by the runner.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', name: ['test'], package: '@tapjs/test' }, { from: 'package', name: ['test'], package: '@tapjs/core' }] },
      ],
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  ...Object.entries(DIRECTION).map(([glob, patterns]) => ({
    files: [glob],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  })),
  {
    files: WORKFLOW_FILES,
    ignores: NOT_WORKFLOW_FILES,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...builtinModules.map((name) => ({ name, message: 'workflow code runs in a sandbox: no Node built-ins; use an activity' })),
            { name: 'pg', message: 'workflow code does no I/O: query PostgreSQL from an activity' },
            { name: '@temporalio/activity', message: 'activity APIs are not available in workflow code' },
            { name: '@temporalio/worker', message: 'worker APIs are not available in workflow code' },
            { name: '@temporalio/client', message: 'use @temporalio/workflow APIs inside workflows' },
          ],
          patterns: [
            { group: ['node:*'], message: 'workflow code runs in a sandbox: no Node built-ins; use an activity' },
            ...DIRECTION['workflows/**/*.ts'],
            { group: ['**/core/**', '**/core'], allowTypeImports: true, message: 'workflow code does no I/O: reach core/ through an activity (its types are fine)' },
            { group: ['**/connectors/**', '**/connectors'], message: 'workflows reach connectors only through activities' },
          ],
        },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports' }],
    },
  },
);
