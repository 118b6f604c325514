/**
 * A private two-host network for the openvpn tests: two network namespaces (server and client) joined
 * by a veth pair with 10.250.77.1/30 and .2/30, which exist only inside those namespaces, and real
 * openvpn processes started in them. Every wait has a deadline and fails with the processes' output;
 * close() kills every process and deletes the namespaces (which takes the veth pair with them).
 */
import { type ChildProcessByStdio, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { OPENVPN } from './test-pki.js';

const run = promisify(execFile);

export const SERVER_ADDRESS = '10.250.77.1';
export const CLIENT_ADDRESS = '10.250.77.2';
export const TUNNEL_SERVER_ADDRESS = '10.251.77.1';

/** Why namespaces cannot be used here, or undefined when they can. */
export async function namespaceSupport(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not running as root (ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN)';
  try {
    await access('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return '/dev/net/tun is not available';
  }
  try {
    await access(OPENVPN, constants.X_OK);
  } catch {
    return `${OPENVPN} is not installed`;
  }
  const probe = `ovpn-probe-${randomBytes(4).toString('hex')}`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'del', probe]);
  } catch (err) {
    return `ip netns add failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`;
  }
  return undefined;
}

export class VpnProcess {
  private out = '';
  exited: { code: number | null; signal: string | null } | undefined;
  private readonly exitedPromise: Promise<void>;

  constructor(
    readonly name: string,
    private readonly child: ChildProcessByStdio<null, Readable, Readable>,
  ) {
    child.stdout.setEncoding('utf8').on('data', (c: string) => (this.out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (this.out += c));
    this.exitedPromise = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        this.exited = { code, signal };
        resolve();
      }),
    );
  }

  get output(): string {
    return this.out;
  }

  /** Waits until `pattern` appears in the output after position `from`; fails with the output. */
  async waitFor(pattern: RegExp, opts: { from?: number; timeoutMs?: number; others?: VpnProcess[] } = {}): Promise<string> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      const m = pattern.exec(this.out.slice(opts.from ?? 0));
      if (m) return m[0];
      if (this.exited || Date.now() > deadline) {
        const why = this.exited ? `exited (${JSON.stringify(this.exited)})` : `did not print it within ${opts.timeoutMs ?? 30_000} ms`;
        const logs = [this, ...(opts.others ?? [])].map((p) => `----- ${p.name} -----\n${p.output.slice(-6000)}`).join('\n');
        throw new Error(`${this.name}: waiting for ${pattern}: ${why}\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    await this.exitedPromise;
    clearTimeout(timer);
  }
}

export class VpnLab {
  readonly id = randomBytes(3).toString('hex');
  readonly serverNs = `ovpn-srv-${this.id}`;
  readonly clientNs = `ovpn-cli-${this.id}`;
  private readonly processes: VpnProcess[] = [];
  private created: string[] = [];

  async setUp(): Promise<void> {
    const [sv, cv] = [`ovs${this.id}`, `ovc${this.id}`];
    for (const ns of [this.serverNs, this.clientNs]) {
      await run('ip', ['netns', 'add', ns]);
      this.created.push(ns);
    }
    await run('ip', ['link', 'add', sv, 'type', 'veth', 'peer', 'name', cv]);
    await run('ip', ['link', 'set', sv, 'netns', this.serverNs]);
    await run('ip', ['link', 'set', cv, 'netns', this.clientNs]);
    for (const [ns, dev, addr] of [
      [this.serverNs, sv, `${SERVER_ADDRESS}/30`],
      [this.clientNs, cv, `${CLIENT_ADDRESS}/30`],
    ] as const) {
      await run('ip', ['-n', ns, 'addr', 'add', addr, 'dev', dev]);
      await run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /** Starts openvpn with `args` inside the namespace `ns`. */
  start(name: string, ns: string, args: string[], cwd: string): VpnProcess {
    return this.spawnIn(name, ns, [OPENVPN, ...args], cwd);
  }

  /** Starts a long-running command inside the namespace `ns`; close() stops it. */
  spawnIn(name: string, ns: string, command: string[], cwd: string): VpnProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...command], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new VpnProcess(name, child);
    this.processes.push(proc);
    return proc;
  }

  /** Runs a command inside a namespace; answers its exit status and output. */
  async exec(ns: string, command: string[]): Promise<{ ok: boolean; output: string }> {
    try {
      const { stdout, stderr } = await run('ip', ['netns', 'exec', ns, ...command], { timeout: 15_000 });
      return { ok: true, output: `${stdout}${stderr}` };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
    for (const ns of this.created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    this.created = [];
  }
}
