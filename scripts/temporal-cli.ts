/**
 * Finds the Temporal CLI (which contains the dev server), building it from the Go module proxy when
 * needed. Order: TEMPORAL_CLI_PATH, `temporal` on PATH, `$(go env GOPATH)/bin/temporal`, then
 * `go install` when Go is available. Returns undefined when none of these works, in which case
 * callers fall back to the Temporal SDK's own download of the CLI (needs internet access).
 *
 * Run directly (`npm run temporal:cli`) it prints the path, building the binary if needed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The last CLI release that `go install` accepts (later ones carry a replace directive). */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function goBinDir(): string | undefined {
  const go = onPath('go') ?? (isExecutable('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
  if (!go) return undefined;
  try {
    const gobin = execFileSync(go, ['env', 'GOBIN'], { encoding: 'utf8' }).trim();
    if (gobin) return gobin;
    const gopath = execFileSync(go, ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(delimiter)[0];
    return gopath ? join(gopath, 'bin') : undefined;
  } catch {
    return undefined;
  }
}

export interface FindOptions {
  /** Build with `go install` when no binary is found (default true). */
  build?: boolean;
  log?: (line: string) => void;
}

export function findTemporalCli(opts: FindOptions = {}): string | undefined {
  const log = opts.log ?? (() => {});
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new Error(`TEMPORAL_CLI_PATH=${fromEnv} is not an executable file`);
  }
  const path = onPath('temporal');
  if (path) return path;
  const binDir = goBinDir();
  if (!binDir) return undefined;
  const built = join(binDir, 'temporal');
  if (isExecutable(built)) return built;
  if (opts.build === false) return undefined;

  const go = onPath('go') ?? '/usr/local/go/bin/go';
  log(`building the Temporal CLI with Go (${TEMPORAL_CLI_MODULE}); this takes a few minutes once`);
  const started = Date.now();
  const res = spawnSync(go, ['install', TEMPORAL_CLI_MODULE], {
    env: { ...process.env, CGO_ENABLED: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (res.status !== 0 || !isExecutable(built)) {
    log(`go install failed (exit ${res.status ?? res.signal}); falling back to the SDK download`);
    return undefined;
  }
  log(`built ${built} in ${Math.round((Date.now() - started) / 1000)} s`);
  return built;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const path = findTemporalCli({ log: (l) => process.stderr.write(`${l}\n`) });
  if (!path) {
    process.stderr.write('Temporal CLI not found and Go is not available to build it\n');
    process.exit(1);
  }
  process.stdout.write(`${path}\n`);
}
