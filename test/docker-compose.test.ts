/**
 * Static checks of docker-compose.yml (Docker does not run in CI): the services exist, their
 * dependencies, hosts, ports and credentials agree with each other, health checks gate start-up,
 * commands and the Dockerfile exist, and every environment variable is one the code reads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { loadGatewayConfig, loadWorkerConfig, requireExternalServices } from '../core/config.js';

type Scalar = string | number | boolean | null;

interface HealthCheck {
  test?: string | string[];
  disable?: boolean;
  interval?: string;
  timeout?: string;
  retries?: number;
  start_period?: string;
}

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, Scalar> | string[];
  ports?: (string | number | { target: number; published?: string | number })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: HealthCheck;
  volumes?: (string | { type?: string; source?: string; target: string })[];
  deploy?: { replicas?: number };
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const root = new URL('../', import.meta.url);
const composeUrl = new URL('../docker-compose.yml', import.meta.url);
const compose = parse(readFileSync(composeUrl, 'utf8')) as Compose;
const services = compose.services;
const packageJson = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};

/** Values substituted for host variables when the file is interpolated the way `docker compose` does. */
const HOST_ENV: Record<string, string> = { SCIM_TOKEN: 'test-token-0123456789abcdef', ADMIN_TOKEN: 'admin-token-0123456789abcdef' };

/** Compose interpolation: `$$` is a literal `$`; `${VAR}`, `${VAR:-default}`, `${VAR:?error}` read the host. */
function interpolate(value: string, hostEnv: Record<string, string> = HOST_ENV): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (match, name?: string, op?: string, arg?: string) => {
    if (match === '$$') return '$';
    const v = hostEnv[name!];
    if (v !== undefined && v !== '') return v;
    if (op === ':-' || op === '-') return arg ?? '';
    throw new Error(`${name} is not set${arg ? `: ${arg}` : ''}`);
  });
}

/** A service's environment as a plain map of raw (uninterpolated) strings, list or map syntax alike. */
function envOf(service: Service): Record<string, string> {
  const env = service.environment;
  if (env === undefined) return {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const i = entry.indexOf('=');
        return i === -1 ? [entry, ''] : [entry.slice(0, i), entry.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** The interpolated environment, as the container will see it. */
function resolvedEnvOf(service: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(envOf(service)).map(([k, v]) => [k, interpolate(v)]));
}

function dependsOn(service: Service): Record<string, string> {
  const deps = service.depends_on;
  if (deps === undefined) return {};
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, 'service_started']));
  return Object.fromEntries(Object.entries(deps).map(([name, d]) => [name, d.condition ?? 'service_started']));
}

/** Published host port -> container port, short or long syntax. */
function portsOf(service: Service): Map<number, number> {
  const map = new Map<number, number>();
  for (const p of service.ports ?? []) {
    if (typeof p === 'object') {
      if (p.published !== undefined) map.set(Number(p.published), p.target);
      continue;
    }
    // [ip:]published:target[/proto]
    const parts = String(p).replace(/\/\w+$/, '').split(':');
    const target = Number(parts.at(-1));
    const published = parts.length >= 2 ? Number(parts.at(-2)) : target;
    map.set(published, target);
  }
  return map;
}

function hasHealthcheck(service: Service): boolean {
  const hc = service.healthcheck;
  if (!hc || hc.disable) return false;
  const test = Array.isArray(hc.test) ? hc.test : hc.test === undefined ? [] : ['CMD-SHELL', hc.test];
  return test.length >= 2 && (test[0] === 'CMD' || test[0] === 'CMD-SHELL');
}

/** The health check command after interpolation, as the container runs it. */
function healthcheckCommand(service: Service): string {
  const test = service.healthcheck?.test;
  return interpolate(Array.isArray(test) ? test.slice(1).join(' ') : (test ?? ''));
}

function commandOf(service: Service): string {
  const c = service.command;
  return Array.isArray(c) ? c.join(' ') : (c ?? '');
}

function buildOf(service: Service): { context: string; dockerfile: string } | undefined {
  const b = service.build;
  if (b === undefined) return undefined;
  if (typeof b === 'string') return { context: b, dockerfile: 'Dockerfile' };
  return { context: b.context ?? '.', dockerfile: b.dockerfile ?? 'Dockerfile' };
}

/**
 * Hosts an environment value points at: the host of a URL, of `host:port`, or of a comma-separated
 * seed list (`POSTGRES_SEEDS`). Returns [] for values that name no host.
 */
function hostsIn(key: string, value: string): { host: string; port: number | undefined }[] {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    const u = new URL(value);
    return [{ host: u.hostname, port: u.port ? Number(u.port) : undefined }];
  }
  const hostPort = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (hostPort) return [{ host: hostPort[1]!, port: Number(hostPort[2]) }];
  if (/_(SEEDS|HOST)$/.test(key)) return value.split(',').map((h) => ({ host: h.trim(), port: undefined }));
  return [];
}

/** Every string in the parsed file, keys included: what compose interpolates (comments are not). */
function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => [k, ...stringsIn(v)]);
  }
  return [];
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);
const APP_SERVICES = ['gateway', 'worker'] as const;

function svc(name: string): Service {
  const s = services[name];
  if (!s) throw new Error(`service ${name} is missing`);
  return s;
}

t.test('every service exists with its image or build', async (t) => {
  t.ok(services && typeof services === 'object', 'services are declared');
  t.equal(svc('postgres').image, 'postgres:16');
  t.equal(svc('temporal').image, 'temporalio/auto-setup:1.29.1');
  t.equal(svc('temporal-ui').image, 'temporalio/ui:2.42.1');
  for (const name of APP_SERVICES) {
    t.same(buildOf(svc(name)), { context: '.', dockerfile: 'Dockerfile' }, `${name} builds from the repo`);
  }
  for (const [name, s] of Object.entries(services)) {
    t.ok(s.image !== undefined || s.build !== undefined, `${name} has an image or a build`);
  }
});

t.test('published ports', async (t) => {
  t.equal(portsOf(svc('gateway')).get(8080), 8080, 'gateway 8080 -> 8080');
  t.equal(portsOf(svc('temporal')).get(7233), 7233, 'temporal 7233 -> 7233');
  t.equal(portsOf(svc('temporal-ui')).get(8233), 8080, 'temporal-ui 8233 -> 8080');
  t.equal(portsOf(svc('worker')).size, 0, 'workers publish nothing, so they can be replicated');

  const seen = new Map<number, string>();
  for (const [name, s] of Object.entries(services)) {
    for (const published of portsOf(s).keys()) {
      t.notOk(seen.has(published), `host port ${published} is published once (${name})`);
      seen.set(published, name);
    }
  }

  const port = Number(resolvedEnvOf(svc('gateway')).PORT ?? 8080);
  t.ok([...portsOf(svc('gateway')).values()].includes(port), `gateway publishes the port it listens on (${port})`);
});

t.test('depends_on refers to existing services and waits for health where there is a health check', async (t) => {
  for (const [name, s] of Object.entries(services)) {
    for (const [dep, condition] of Object.entries(dependsOn(s))) {
      const target = services[dep];
      t.ok(target, `${name} depends on existing service ${dep}`);
      if (target && hasHealthcheck(target)) {
        t.equal(condition, 'service_healthy', `${name} waits for ${dep} to be healthy`);
      }
    }
  }
  t.same(Object.keys(dependsOn(svc('temporal'))), ['postgres']);
  t.same(Object.keys(dependsOn(svc('temporal-ui'))), ['temporal']);
  for (const name of APP_SERVICES) {
    t.same(Object.keys(dependsOn(svc(name))).sort(), ['postgres', 'temporal'], `${name} needs postgres and temporal`);
  }
});

t.test('every long-running service except the worker has a health check', async (t) => {
  for (const name of ['postgres', 'temporal', 'temporal-ui', 'gateway']) {
    const s = svc(name);
    t.ok(hasHealthcheck(s), `${name} has a health check`);
    t.ok(s.healthcheck?.interval, `${name} sets an interval`);
    t.ok(s.healthcheck?.retries, `${name} sets retries`);
  }
  t.match(healthcheckCommand(svc('postgres')), /pg_isready/);
  t.match(healthcheckCommand(svc('temporal')), /temporal operator cluster health --address \$\(hostname -i\):7233/);
  t.notMatch(healthcheckCommand(svc('temporal')), /\btctl\b/, 'the auto-setup image ships the temporal CLI, not tctl');
  const port = resolvedEnvOf(svc('gateway')).PORT ?? '8080';
  t.match(healthcheckCommand(svc('gateway')), new RegExp(`fetch\\('http://127\\.0\\.0\\.1:${port}/(healthz|readyz)'\\)`));
});

t.test('hosts named in environment values are services (or localhost for browser-facing URLs)', async (t) => {
  for (const [name, s] of Object.entries(services)) {
    for (const [key, value] of Object.entries(resolvedEnvOf(s))) {
      for (const { host, port } of hostsIn(key, value)) {
        if (LOCAL_HOSTS.has(host)) {
          // A URL given to a browser: the port must be published to the host by some service.
          const publisher = Object.entries(services).find(([, other]) => port !== undefined && portsOf(other).has(port));
          t.ok(publisher, `${name} ${key}: localhost:${port} is a published port`);
        } else {
          t.ok(services[host], `${name} ${key}: host "${host}" is a service`);
        }
      }
    }
  }
});

t.test('gateway and worker reach the same PostgreSQL and Temporal, with the postgres credentials', async (t) => {
  const pg = resolvedEnvOf(svc('postgres'));
  const temporal = resolvedEnvOf(svc('temporal'));
  const gatewayEnv = resolvedEnvOf(svc('gateway'));

  for (const name of APP_SERVICES) {
    const env = resolvedEnvOf(svc(name));
    t.ok(env.DATABASE_URL, `${name} has DATABASE_URL`);
    t.equal(env.TEMPORAL_ADDRESS, 'temporal:7233', `${name} has TEMPORAL_ADDRESS`);
    t.equal(env.DATABASE_URL, gatewayEnv.DATABASE_URL, `${name} uses the gateway's database`);

    const url = new URL(env.DATABASE_URL ?? '');
    t.equal(url.hostname, 'postgres', `${name} DATABASE_URL host`);
    t.equal(decodeURIComponent(url.username), pg.POSTGRES_USER, `${name} DATABASE_URL user`);
    t.equal(decodeURIComponent(url.password), pg.POSTGRES_PASSWORD, `${name} DATABASE_URL password`);
    t.equal(url.pathname.slice(1), pg.POSTGRES_DB, `${name} DATABASE_URL database`);
    t.equal(url.port || '5432', '5432', `${name} DATABASE_URL port`);
  }
  t.equal(pg.POSTGRES_DB, 'scim_gateway');

  t.equal(temporal.DB, 'postgres12');
  t.equal(temporal.DB_PORT, '5432');
  t.equal(temporal.POSTGRES_SEEDS, 'postgres');
  t.equal(temporal.POSTGRES_USER, pg.POSTGRES_USER, 'temporal POSTGRES_USER matches postgres');
  t.equal(temporal.POSTGRES_PWD, pg.POSTGRES_PASSWORD, 'temporal POSTGRES_PWD matches postgres');
  t.equal(resolvedEnvOf(svc('temporal-ui')).TEMPORAL_ADDRESS, 'temporal:7233');
});

t.test('the gateway and worker environments pass the real configuration loader', async (t) => {
  const gw = loadGatewayConfig(resolvedEnvOf(svc('gateway')));
  t.doesNotThrow(() => requireExternalServices(gw), 'gateway has DATABASE_URL and TEMPORAL_ADDRESS');
  t.equal(gw.port, 8080);
  t.equal(gw.scimToken, HOST_ENV.SCIM_TOKEN);
  t.equal(gw.adminToken, HOST_ENV.ADMIN_TOKEN, 'the admin API is usable');
  t.equal(gw.publicUrl, 'http://localhost:8080');
  t.equal(gw.temporalUiUrl, 'http://localhost:8233');

  const wk = loadWorkerConfig(resolvedEnvOf(svc('worker')));
  t.doesNotThrow(() => requireExternalServices(wk), 'worker has DATABASE_URL and TEMPORAL_ADDRESS');
});

t.test('host variables are required or defaulted, and shell `$` is escaped', async (t) => {
  // Without a value compose would substitute an empty string silently.
  const refs = stringsIn(compose).flatMap((s) => [...s.replaceAll('$$', '').matchAll(/\$(\{[^}]*\}|[A-Za-z_(]?)/g)].map((m) => m[0]));
  for (const ref of refs) {
    t.match(ref, /^\$\{[A-Za-z_][A-Za-z0-9_]*:[?-][^}]*\}$/, `${ref} is a \${VAR:?…} or \${VAR:-…} reference`);
  }
  t.equal(envOf(svc('gateway')).SCIM_TOKEN, '${SCIM_TOKEN:?set SCIM_TOKEN}');
  t.throws(() => interpolate(envOf(svc('gateway')).SCIM_TOKEN ?? '', {}), /SCIM_TOKEN is not set/);
});

t.test('commands run the compiled build with plain node', async (t) => {
  t.equal(commandOf(svc('gateway')), 'node dist/gateway/server.js');
  t.equal(commandOf(svc('worker')), 'node dist/workflows/worker.js');
  const build = JSON.parse(readFileSync(new URL('tsconfig.build.json', root), 'utf8')) as { include: string[] };
  for (const name of APP_SERVICES) {
    const file = /^node dist\/(\S+)\.js$/.exec(commandOf(svc(name)))?.[1];
    t.ok(file && existsSync(new URL(`${file}.ts`, root)), `${name}: dist/${file}.js is compiled from ${file}.ts`);
    t.ok(file && build.include.some((inc) => file.startsWith(inc)), `${name}: ${file}.ts is part of the build`);
  }
  t.ok(packageJson.scripts['build:dist'], 'the image builds with npm run build:dist');
  t.equal(svc('worker').deploy?.replicas, 2, 'two workers share the task queue');
  const workerEnvFiles = (svc('worker') as { env_file?: Array<{ path: string; required?: boolean }> }).env_file ?? [];
  t.same(workerEnvFiles, [{ path: './connector-secrets.env', required: false }], 'the workers read connector secrets from a file of their own');
  t.notOk((svc('gateway') as { env_file?: unknown }).env_file, 'the gateway never sees connector secrets');
});

t.test('the build context has its Dockerfile', async (t) => {
  t.ok(existsSync(new URL('Dockerfile', root)), 'Dockerfile exists');
  for (const name of APP_SERVICES) {
    const b = buildOf(svc(name));
    if (!b) {
      t.fail(`${name} has no build`);
      continue;
    }
    const context = new URL(b.context.endsWith('/') ? b.context : `${b.context}/`, root);
    t.ok(existsSync(context), `${name}: build context ${b.context} exists`);
    t.ok(existsSync(new URL(b.dockerfile, context)), `${name}: ${b.dockerfile} exists in the context`);
  }
  const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
  const nodeVersion = readFileSync(new URL('.node-version', root), 'utf8').trim();
  const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  t.same(froms, [`node:${nodeVersion}-bookworm-slim`, `node:${nodeVersion}-bookworm-slim`], 'both stages run the Node.js of .node-version');
  t.match(dockerfile, /^RUN npm ci$/m, 'the build installs the committed lock exactly');
  t.match(dockerfile, /npm run build:dist && npm prune --omit=dev/, 'compiled at build time; dev dependencies left out');
  t.match(dockerfile, /^COPY --from=build \/src\/dist \.\/dist$/m, 'the final stage holds the compiled code, not the sources');
  t.match(dockerfile, /^USER node$/m);
  t.match(dockerfile, /^CMD \["node", "dist\/gateway\/server\.js"\]$/m);
  const ignore = existsSync(new URL('.dockerignore', root)) ? readFileSync(new URL('.dockerignore', root), 'utf8') : '';
  t.match(ignore, /^node_modules\/?$/m, '.dockerignore keeps the host node_modules out of the image');
});

t.test('named volumes are declared', async (t) => {
  for (const [name, s] of Object.entries(services)) {
    for (const v of s.volumes ?? []) {
      const source = typeof v === 'string' ? v.split(':')[0]! : (v.source ?? '');
      if (source === '' || /^[./~]/.test(source)) continue; // anonymous or bind mount
      t.ok(compose.volumes && source in compose.volumes, `${name}: volume ${source} is declared`);
    }
  }
  t.ok(
    (svc('postgres').volumes ?? []).some((v) => (typeof v === 'string' ? v : v.target).includes('/var/lib/postgresql/data')),
    'postgres keeps its data in a volume',
  );
});

t.test("the Temporal server's dynamic config is mounted from the repository and turns eager activities on", async (t) => {
  const temporal = svc('temporal');
  const env = temporal.environment as Record<string, Scalar>;
  const mount = (temporal.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`)).find((v) => v.includes('dynamicconfig'));
  t.ok(mount, 'a dynamic config file is mounted');
  const [source, targetPath] = mount!.split(':');
  t.equal(targetPath, `/etc/temporal/${String(env.DYNAMIC_CONFIG_FILE_PATH)}`, 'DYNAMIC_CONFIG_FILE_PATH names the mounted file (relative to /etc/temporal)');
  const file = new URL(source!, root);
  t.ok(existsSync(file), `${source} exists`);
  const config = parse(readFileSync(file, 'utf8')) as Record<string, Array<{ value: unknown }>>;
  t.same(config['system.enableActivityEagerExecution'], [{ value: true }], 'eager activity execution on');
});

t.test('gateway and worker set only variables that core/config.ts reads', async (t) => {
  const source = readFileSync(new URL('core/config.ts', root), 'utf8');
  const known = new Set([...source.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map((m) => m[1]!));
  t.ok(known.has('DATABASE_URL') && known.has('SCIM_TOKEN'), 'found the variables config.ts reads');
  for (const name of APP_SERVICES) {
    for (const key of Object.keys(envOf(svc(name)))) {
      t.ok(known.has(key), `${name}: ${key} is read by core/config.ts`);
    }
  }
});

const envExample = new URL('.env.example', root);
t.test(
  'gateway and worker set only variables documented in .env.example',
  { skip: existsSync(envExample) ? false : `${fileURLToPath(envExample)} does not exist yet` },
  async (t) => {
    // Documented means listed, set or commented out: `KEY=value` or `# KEY=value`.
    const documented = new Set(
      [...readFileSync(envExample, 'utf8').matchAll(/^[ \t]*#?[ \t]*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!),
    );
    for (const name of APP_SERVICES) {
      for (const key of Object.keys(envOf(svc(name)))) {
        t.ok(documented.has(key), `${name}: ${key} is documented in .env.example`);
      }
    }
  },
);
