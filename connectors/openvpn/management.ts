/**
 * A client of the OpenVPN management interface (doc/management-notes.txt in OpenVPN's sources): one
 * connection per command, on a unix socket or a TCP host:port, with the optional password. The
 * server serves one management client at a time, so commands of this process are queued.
 */
import { createConnection, type Socket } from 'node:net';
import { PermanentError, TransientError } from '@scim-gateway/connector-sdk';

export interface ManagementOptions {
  /** An absolute unix socket path, or host:port. */
  address: string;
  /** Resolves the password, or undefined when the interface has none. */
  password: () => Promise<string | undefined>;
  timeoutMs: number;
}

/** A client connected to the VPN right now, from `status 3`. */
export interface LiveSession {
  commonName: string;
  realAddress?: string | undefined;
  virtualAddress?: string | undefined;
  connectedSince?: string | undefined;
  /** False while the server has not admitted the client (no virtual address yet, e.g. refused by ccd-exclusive). */
  established: boolean;
}

export type KillResult = 'killed' | 'notConnected';

const queues = new Map<string, Promise<unknown>>();

function connectOptions(address: string): { path: string } | { host: string; port: number } {
  if (address.startsWith('/')) return { path: address };
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  if (!m) throw new PermanentError(`openvpn: management address ${JSON.stringify(address)} is neither an absolute socket path nor host:port`, 'invalidConfig');
  return { host: m[1]!, port: Number(m[2]) };
}

/** Parses `status 3` output (tab-separated, with HEADER lines naming the columns). */
export function parseStatus(lines: string[]): LiveSession[] {
  let columns: string[] = [];
  const sessions: LiveSession[] = [];
  for (const line of lines) {
    const fields = line.split('\t');
    if (fields[0] === 'HEADER' && fields[1] === 'CLIENT_LIST') columns = fields.slice(2);
    if (fields[0] !== 'CLIENT_LIST') continue;
    const row = new Map(columns.map((name, i) => [name, fields[i + 1] ?? '']));
    const commonName = row.get('Common Name') ?? fields[1];
    if (!commonName || commonName === 'UNDEF') continue;
    const time = Number(row.get('Connected Since (time_t)'));
    const virtualAddress = row.get('Virtual Address') || row.get('Virtual IPv6 Address') || undefined;
    sessions.push({
      commonName,
      established: virtualAddress !== undefined,
      realAddress: row.get('Real Address') || undefined,
      virtualAddress,
      connectedSince: Number.isFinite(time) && time > 0 ? new Date(time * 1000).toISOString() : undefined,
    });
  }
  return sessions;
}

export class ManagementClient {
  constructor(private readonly opts: ManagementOptions) {}

  /** `version`: proves the interface answers (and accepts the password). */
  async version(): Promise<string> {
    const lines = await this.command('validate', 'version', true);
    return lines.find((l) => l.startsWith('OpenVPN Version:'))?.slice('OpenVPN Version:'.length).trim() ?? lines.join(' ');
  }

  async status(): Promise<LiveSession[]> {
    return parseStatus(await this.command('status', 'status 3', true));
  }

  /** Drops every session of `commonName`; a client that is not connected is fine. */
  async kill(commonName: string): Promise<KillResult> {
    const [answer = ''] = await this.command('kill', `kill ${commonName}`, false);
    if (answer.startsWith('SUCCESS:')) return 'killed';
    if (/not found/i.test(answer)) return 'notConnected';
    throw new PermanentError(`openvpn: management kill failed: ${answer.slice(0, 300)}`, 'managementFailed');
  }

  /** Sends one command and answers its reply lines (up to END for multi-line replies). */
  command(op: string, cmd: string, multiLine: boolean): Promise<string[]> {
    const previous = queues.get(this.opts.address) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.exchange(op, cmd, multiLine));
    const tail = run.catch(() => undefined);
    queues.set(this.opts.address, tail);
    void tail.then(() => {
      if (queues.get(this.opts.address) === tail) queues.delete(this.opts.address);
    });
    return run;
  }

  private async exchange(op: string, cmd: string, multiLine: boolean): Promise<string[]> {
    const what = `openvpn: management ${op}`;
    const target = connectOptions(this.opts.address);
    const password = await this.opts.password();
    return await new Promise<string[]>((resolve, reject) => {
      const socket: Socket = createConnection(target);
      let buffer = '';
      let phase: 'greeting' | 'password' | 'reply' = 'greeting';
      const reply: string[] = [];
      let settled = false;
      const finish = (err: Error | undefined, lines?: string[]) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err);
        else resolve(lines ?? []);
      };
      const timer = setTimeout(
        () => finish(new TransientError(`${what} failed: no answer from the management interface within ${this.opts.timeoutMs} ms (another management client connected?)`)),
        this.opts.timeoutMs,
      );
      const send = (text: string) => socket.write(`${text}\n`);
      const onLine = (line: string) => {
        if (phase === 'password') {
          if (line.startsWith('SUCCESS:')) return;
          if (line.startsWith('ERROR:')) return finish(new PermanentError(`${what} failed: the management interface refused the password`, 'unauthorized'));
        }
        // Greeting (">INFO:…") and real-time notifications start with '>'.
        if (line.startsWith('>')) {
          if (phase !== 'reply' && line.startsWith('>INFO:')) {
            phase = 'reply';
            send(cmd);
          }
          return;
        }
        if (phase !== 'reply') return;
        if (!multiLine) return finish(undefined, [line]);
        if (line === 'END') return finish(undefined, reply);
        if (line.startsWith('ERROR:') && reply.length === 0) return finish(new PermanentError(`${what} failed: ${line.slice(0, 300)}`, 'managementFailed'));
        reply.push(line);
      };
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        // The password prompt ends without a newline; a second prompt means the password was refused.
        if (phase === 'password' && buffer.startsWith('ENTER PASSWORD:')) {
          return finish(new PermanentError(`${what} failed: the management interface refused the password`, 'unauthorized'));
        }
        if (phase === 'greeting' && buffer.startsWith('ENTER PASSWORD:')) {
          buffer = buffer.slice('ENTER PASSWORD:'.length);
          if (password === undefined) return finish(new PermanentError(`${what} failed: the management interface asks for a password and none is configured (management.password)`, 'invalidConfig'));
          phase = 'password';
          send(password);
        }
        let nl: number;
        while (!settled && (nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          onLine(line);
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        finish(new TransientError(`${what} failed: cannot reach the management interface at ${this.opts.address} (${err.code ?? err.message})`, undefined, { cause: err }));
      });
      socket.on('close', () => finish(new TransientError(`${what} failed: the management interface closed the connection before answering`)));
    });
  }
}
