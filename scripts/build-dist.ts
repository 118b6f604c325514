/**
 * `npm run build:dist`: the production build. Compiles the gateway, the worker, the connectors and
 * the command-line tools to JavaScript in dist/ (tsconfig.build.json), copies the files they read at
 * run time (SQL migrations), and bundles the workflow code for Temporal's sandbox once, so a
 * production worker starts without webpack or a TypeScript loader.
 *
 *   node dist/gateway/server.js      the gateway
 *   node dist/workflows/worker.js    a worker
 *   node dist/scripts/token.js       tokens (as `npm run token`)
 *
 * The connector SDK (packages/connector-sdk) is compiled first, to its own dist/: the compiled code
 * reaches it through node_modules by package name, so an image needs packages/ as well.
 *
 * `--out DIR` writes somewhere else than dist/ (the build's own test uses it).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { WORKFLOW_BUNDLE_FILE } from '../workflows/worker.js';

const outIndex = process.argv.indexOf('--out');
const out = resolve(outIndex > 0 ? process.argv[outIndex + 1]! : 'dist');
const say = (line: string) => process.stderr.write(`[build] ${line}\n`);

rmSync(out, { recursive: true, force: true });
const tsc = join(process.cwd(), 'node_modules', 'typescript', 'bin', 'tsc');
// The connector SDK first: the compiled gateway imports it by name, from its dist/, as a plugin does.
execFileSync(process.execPath, [tsc, '-p', 'packages/connector-sdk/tsconfig.build.json'], { stdio: 'inherit' });
say('compiled the connector SDK to packages/connector-sdk/dist');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out], { stdio: 'inherit' });
say(`compiled to ${out}`);

cpSync('core/db/migrations', join(out, 'core/db/migrations'), { recursive: true });
// The output is ES modules wherever it is copied, with or without the project's package.json.
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'module', private: true }, null, 2)}\n`);
// Outside the project (`--out /tmp/x`) the compiled code still needs the project's dependencies.
const modules = resolve('node_modules');
if (relative(process.cwd(), out).startsWith('..')) symlinkSync(modules, join(out, 'node_modules'), 'dir');

// The bundle is made from the compiled JavaScript, the same code the worker would bundle itself.
const workflowsPath = join(out, 'workflows', 'workflows.js');
if (!existsSync(workflowsPath)) throw new Error(`${workflowsPath} missing after compiling`);
const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn: (m: string) => say(m), error: (m: string) => say(m) };
const bundle = await bundleWorkflowCode({ workflowsPath, logger: quiet });
writeFileSync(join(out, 'workflows', WORKFLOW_BUNDLE_FILE), bundle.code);
say(`workflow bundle: ${join(out, 'workflows', WORKFLOW_BUNDLE_FILE)} (${Math.round(bundle.code.length / 1024)} KiB)`);
