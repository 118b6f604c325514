/**
 * `npm run build` (type-check) and `npm run lint` (including the workflow sandbox rules) are part of
 * the suite, so a type error or a Node import in workflow code fails `npm test`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const bin = (name: string) => new URL(`../node_modules/.bin/${name}`, import.meta.url).pathname;
const root = new URL('..', import.meta.url).pathname;

t.test('tsc type-checks everything', async (t) => {
  const res = await run(bin('tsc'), ['-p', '.'], { cwd: root }).catch((err: { stdout: string }) => err);
  t.equal(res.stdout.trim(), '', 'no type errors');
});

t.test('eslint passes', async (t) => {
  const res = await run(bin('eslint'), ['.'], { cwd: root, maxBuffer: 10 * 1024 * 1024 }).catch((err: { stdout: string }) => err);
  t.equal(res.stdout.trim(), '', 'no lint errors');
});
