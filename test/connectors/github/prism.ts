/**
 * GitHub's official OpenAPI description (shipped by @octokit/openapi) enforced on live traffic: a
 * Prism proxy (`prism proxy --errors`) in front of any upstream (the fake GitHub), which refuses a
 * request the description does not allow and replaces an answer that does not match it with an
 * error, so neither the connector's requests nor the fake's answers can drift from the real API.
 *
 * The full description is 13 MB; Prism loads only the operations given here, extracted at start
 * with every component they reference, which keeps start-up to a few seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Json = Record<string, unknown>;
const require = createRequire(import.meta.url);

/** Every operation the github connector (and its fake) use, as [path, method]. */
export const GITHUB_OPERATIONS: ReadonlyArray<readonly [string, string]> = [
  ['/orgs/{org}', 'get'],
  ['/orgs/{org}/members', 'get'],
  ['/orgs/{org}/memberships/{username}', 'get'],
  ['/orgs/{org}/memberships/{username}', 'put'],
  ['/orgs/{org}/memberships/{username}', 'delete'],
  ['/orgs/{org}/invitations', 'get'],
  ['/orgs/{org}/invitations', 'post'],
  ['/orgs/{org}/invitations/{invitation_id}', 'delete'],
  ['/orgs/{org}/teams', 'get'],
  ['/orgs/{org}/teams/{team_slug}/members', 'get'],
  ['/orgs/{org}/teams/{team_slug}/memberships/{username}', 'get'],
  ['/orgs/{org}/teams/{team_slug}/memberships/{username}', 'put'],
  ['/orgs/{org}/teams/{team_slug}/memberships/{username}', 'delete'],
  ['/orgs/{org}/teams/{team_slug}/invitations', 'get'],
  ['/app/installations/{installation_id}/access_tokens', 'post'],
];

/** The path of the official description of api.github.com in @octokit/openapi. */
export function officialDescriptionPath(): string {
  return require.resolve('@octokit/openapi/generated/api.github.com.json');
}

/**
 * A valid OpenAPI document holding only `operations` of `full` and the components they reference
 * (transitively), nothing else changed.
 */
export function extractOperations(full: Json, operations: ReadonlyArray<readonly [string, string]>): Json {
  const fullPaths = full.paths as Record<string, Json>;
  const paths: Record<string, Json> = {};
  for (const [path, method] of operations) {
    const item = fullPaths[path];
    const op = item?.[method];
    if (!op) throw new Error(`the official description has no ${method.toUpperCase()} ${path}`);
    paths[path] = { ...(paths[path] ?? {}), [method]: op };
    if (item.parameters) paths[path].parameters = item.parameters;
  }
  const components = full.components as Record<string, Record<string, unknown>>;
  const kept: Record<string, Record<string, unknown>> = {};
  const pending: unknown[] = [paths];
  const seen = new Set<string>();
  while (pending.length > 0) {
    const node = pending.pop();
    if (Array.isArray(node)) {
      pending.push(...node);
      continue;
    }
    if (!node || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith('#/components/')) {
        if (seen.has(value)) continue;
        seen.add(value);
        const [, , kind, name] = value.split('/') as [string, string, string, string];
        const target = components[kind]?.[name];
        if (target === undefined) throw new Error(`unresolvable reference ${value}`);
        (kept[kind] ??= {})[name] = target;
        pending.push(target);
      } else pending.push(value);
    }
  }
  return { openapi: full.openapi, info: full.info, servers: full.servers, paths, components: kept };
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface PrismProxy {
  /** The proxy's base URL; point the connector's baseUrl here. */
  url: string;
  /** Everything Prism printed, for assertions about violations it reported. */
  output(): string;
  /**
   * The lines of output (from character `from` on) that report a violation of the description.
   * Prism's warning for an error status the description does not list for an operation is left
   * out: GitHub really answers 404 for a missing team or user and 403/429 for rate limits.
   */
  violations(from?: number): string[];
  close(): Promise<void>;
}

/**
 * Starts `prism proxy --errors` on a free loopback port in front of `upstream`, validating against
 * the given operations of the official description (default: the connector's), and resolves once
 * it answers. `close` kills it and waits for it to exit.
 */
export async function startPrism(upstream: string, opts: { operations?: ReadonlyArray<readonly [string, string]>; startTimeoutMs?: number } = {}): Promise<PrismProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'prism-github-'));
  const specPath = join(dir, 'github-subset.json');
  const full = JSON.parse(readFileSync(officialDescriptionPath(), 'utf8')) as Json;
  writeFileSync(specPath, JSON.stringify(extractOperations(full, opts.operations ?? GITHUB_OPERATIONS)));
  const port = await freePort();
  const bin = require.resolve('@stoplight/prism-cli/dist/index.js');
  const child: ChildProcess = spawn(process.execPath, [bin, 'proxy', specPath, upstream, '--errors', '--host', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
  });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) {
      await close();
      throw new Error(`prism exited with ${child.exitCode}: ${log}`);
    }
    if (/Prism is listening/.test(log)) break;
    if (Date.now() > deadline) {
      await close();
      throw new Error(`prism did not start in time: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const violations = (from = 0) =>
    log
      .slice(from)
      .split('\n')
      // Only lines logged at warning or error level: info lines list paths with made-up examples.
      .filter((l) => /\s(?:warning|error|fatal)\s{2,}\S/.test(l) && !/Unable to match the returned status code with those defined in the document/.test(l));
  return { url: `http://127.0.0.1:${port}`, output: () => log, violations, close };
}
