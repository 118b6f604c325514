/**
 * `npm run build` (type-check) and `npm run lint` (including the workflow sandbox rules) are part of
 * the suite, so a type error or a Node import in workflow code fails `npm test`. Both are judged by
 * their exit code: a crashed tool (eslint exits 2 with its complaint on stderr) is a failure, not
 * an empty report. The dependency-direction rules are shown to fire on planted imports.
 */
import { execFile } from 'node:child_process';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import t from 'tap';

const bin = (name: string) => new URL(`../node_modules/.bin/${name}`, import.meta.url).pathname;
const root = new URL('..', import.meta.url).pathname;

/** Runs a tool and answers its exit code and output, whatever the code. */
function runTool(file: string, args: string[], cwd = root): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, maxBuffer: 10 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('tsc type-checks everything', async (t) => {
  const res = await runTool(bin('tsc'), ['-p', '.']);
  t.equal(res.stdout.trim(), '', 'no type errors');
  t.equal(res.code, 0, `tsc exits 0${res.code ? `: ${res.stderr.slice(0, 2000)}` : ''}`);
});

t.test('eslint passes', async (t) => {
  const res = await runTool(bin('eslint'), ['.']);
  t.equal(res.stdout.trim(), '', 'no lint errors');
  t.equal(res.code, 0, `eslint exits 0${res.code ? `: ${res.stderr.slice(0, 2000)}` : ''}`);
});

t.test('a crashing tool is told apart from a clean one', async (t) => {
  const crashed = await runTool(bin('eslint'), ['--config', 'no-such-config.js', '.']);
  t.equal(crashed.stdout.trim(), '', 'a crash can leave stdout empty');
  t.equal(crashed.code, 2, 'but eslint exits 2, which the checks above reject');
  const failing = await runTool(bin('tsc'), ['--noEmit', '--strict', 'no-such-file.ts']);
  t.not(failing.code, 0, 'a tsc that cannot run exits non-zero');
});

t.test('lint holds the dependency direction: edge and Temporal side over core, core over connectors', async (t) => {
  // Type information is not needed for import rules, and planted files are not on disk.
  const eslint = new ESLint({ cwd: root, overrideConfig: [tseslint.configs.disableTypeChecked] });
  const problems = async (file: string, code: string) => {
    const [result] = await eslint.lintText(code, { filePath: `${root}${file}` });
    return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
  };
  const refused: Array<[string, string]> = [
    ['core/probe.ts', "import { buildApp } from '../gateway/app.js';"],
    ['core/access/probe.ts', "import { startAccessRequest } from '../../workflows/client.js';"],
    ['gateway/routes/api/probe.ts', "import { activitiesFor } from '../../../workflows/activities/index.js';"],
    ['workflows/activities/probe.ts', "import { buildApp } from '../../gateway/app.js';"],
    ['connectors/github/probe.ts', "import { loadConfig } from '../../core/config.js';"],
    ['workflows/probe.ts', "import { loadConfig } from '../core/config.js';"],
    ['packages/connector-sdk/src/probe.ts', "import { loadConfig } from '../../../core/config.js';"],
  ];
  for (const [file, line] of refused) {
    const found = await problems(file, `${line}\nexport const probe = 1;\n`);
    t.equal(found.length, 1, `${file}: ${line} is refused${found[0] ? ` (${found[0]})` : ''}`);
  }
  const allowed: Array<[string, string]> = [
    ['gateway/routes/api/probe.ts', "import { startAccessRequest } from '../../../workflows/client.js';"],
    ['gateway/probe.ts', "import { loadConfig } from '../core/config.js';"],
    ['workflows/activities/probe.ts', "import { withTransaction } from '../../core/db/pool.js';"],
    ['workflows/probe.ts', "import type { GatewayConfig } from '../core/config.js';"],
    ['core/probe.ts', "import { loadConnector } from '../connectors/index.js';"],
  ];
  for (const [file, line] of allowed) {
    t.same(await problems(file, `${line}\nexport const probe = 1;\n`), [], `${file}: ${line} is allowed`);
  }
});
