/**
 * The easy-rsa PKI as the connector uses it: runs the easyrsa program (execFile with an argument
 * array and a clean environment, never a shell), reads its certificate database (index.txt) and
 * knows where easy-rsa 3.1 keeps each file. Callers serialize access with ./lock.ts.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PermanentError, TransientError } from '@scim-gateway/connector-sdk';

/** One line of easy-rsa's index.txt (the OpenSSL `ca` database). */
export interface IndexEntry {
  /** V valid, R revoked, E marked expired by OpenSSL. A V entry past its expiry is expired too. */
  status: 'V' | 'R' | 'E';
  expiresAt: Date;
  revokedAt?: Date | undefined;
  revocationReason?: string | undefined;
  /** Upper-case hex, as easy-rsa names files by it. */
  serial: string;
  subject: string;
  /** The subject's CN, when it has one. */
  commonName?: string | undefined;
}

export interface EasyRsaOptions {
  easyrsaPath: string;
  pkiDir: string;
  /** Validity of issued client certificates, in days (EASYRSA_CERT_EXPIRE). */
  certDays: number;
  /** Validity of generated CRLs, in days (EASYRSA_CRL_DAYS). */
  crlDays: number;
  /** Key options passed as EASYRSA_ALGO, EASYRSA_CURVE, EASYRSA_KEY_SIZE, EASYRSA_DIGEST when set. */
  keyAlgorithm?: string | undefined;
  curve?: string | undefined;
  rsaKeySize?: number | undefined;
  digest?: string | undefined;
  /** Deadline for one easyrsa run. */
  timeoutMs: number;
  /** Removes secret values from text that may end up in an error message. */
  redact: (text: string) => string;
}

/** OpenSSL writes UTCTime (YYMMDDHHMMSSZ) up to 2049 and GeneralizedTime (YYYYMMDDHHMMSSZ) after. */
export function parseIndexTime(text: string): Date | undefined {
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return undefined;
  let year = Number(m[1]);
  if (m[1]!.length === 2) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** The CN of an OpenSSL one-line subject such as `/CN=alice/O=Example`. */
export function commonNameOf(subject: string): string | undefined {
  const m = /(?:^|\/)CN=((?:\\.|[^/\\])*)/.exec(subject);
  return m ? m[1]!.replace(/\\(.)/g, '$1') : undefined;
}

/** Parses index.txt; lines that do not look like database lines are skipped. */
export function parseIndex(text: string): IndexEntry[] {
  const entries: IndexEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split('\t');
    if (fields.length < 6) continue;
    const [status, expiry, revocation, serial, , ...subjectParts] = fields as [string, string, string, string, string, ...string[]];
    const expiresAt = parseIndexTime(expiry);
    if ((status !== 'V' && status !== 'R' && status !== 'E') || !expiresAt || !/^[0-9A-Fa-f]+$/.test(serial)) continue;
    const subject = subjectParts.join('\t');
    const [revokedText, reason] = revocation.split(',', 2);
    entries.push({
      status,
      expiresAt,
      revokedAt: status === 'R' && revokedText ? parseIndexTime(revokedText) : undefined,
      revocationReason: status === 'R' ? reason : undefined,
      serial: serial.toUpperCase(),
      subject,
      commonName: commonNameOf(subject),
    });
  }
  return entries;
}

export type CertificateState = 'valid' | 'revoked' | 'expired';

export function stateOf(entry: IndexEntry, now = Date.now()): CertificateState {
  if (entry.status === 'R') return 'revoked';
  if (entry.status === 'E' || entry.expiresAt.getTime() <= now) return 'expired';
  return 'valid';
}

/** The first PEM certificate block of a file (easy-rsa's issued certs start with a text dump). */
export function pemCertificate(text: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
  if (!m) throw new PermanentError('openvpn: a certificate file of the PKI holds no PEM certificate', 'invalidPki');
  return `${m[0]}\n`;
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** True for a certificate a server presents (serverAuth without clientAuth), which is never an account. */
export function isServerCertificate(pem: string): boolean {
  const usage = new X509Certificate(pem).keyUsage ?? [];
  return usage.includes(SERVER_AUTH) && !usage.includes(CLIENT_AUTH);
}

/** Text without PEM blocks, with secrets redacted, shortened: fit for an error message. */
function sanitizeOutput(text: string, redact: (text: string) => string): string {
  const cleaned = redact(text.replace(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----/g, '[PEM block removed]'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^(Host:|Using configuration from|Easy-RSA error:$)/.test(l))
    .join(' ');
  return cleaned.length > 600 ? `${cleaned.slice(0, 600)}…` : cleaned;
}

export class EasyRsa {
  constructor(readonly opts: EasyRsaOptions) {}

  path(...parts: string[]): string {
    return join(this.opts.pkiDir, ...parts);
  }

  /**
   * The environment of every run: nothing inherited from the worker, so no secret of it reaches
   * easyrsa. Runs start in easyrsa's own folder: easy-rsa 3.1 also reads a `vars` file from the
   * working directory and refuses to run when it finds two.
   */
  private env(): Record<string, string> {
    const o = this.opts;
    return {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C',
      LC_ALL: 'C',
      EASYRSA_PKI: o.pkiDir,
      EASYRSA_BATCH: '1',
      EASYRSA_CERT_EXPIRE: String(o.certDays),
      EASYRSA_CRL_DAYS: String(o.crlDays),
      ...(o.keyAlgorithm && { EASYRSA_ALGO: o.keyAlgorithm }),
      ...(o.curve && { EASYRSA_CURVE: o.curve }),
      ...(o.rsaKeySize && { EASYRSA_KEY_SIZE: String(o.rsaKeySize) }),
      ...(o.digest && { EASYRSA_DIGEST: o.digest }),
    };
  }

  /**
   * Runs easyrsa with `args`. A program that cannot be started is invalid configuration; one that
   * runs past the deadline is transient; one that fails is permanent, with its own words.
   */
  run(op: string, args: string[]): Promise<string> {
    const what = `openvpn: ${op}: easyrsa ${args[0] ?? ''}`.trimEnd();
    return new Promise((resolve, reject) => {
      execFile(
        this.opts.easyrsaPath,
        args,
        { env: this.env(), cwd: dirname(this.opts.easyrsaPath), timeout: this.opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
          if (e.code === 'ENOENT' || e.code === 'EACCES') {
            return reject(new PermanentError(`${what} failed: cannot run ${this.opts.easyrsaPath} (${e.code}); check easyrsaPath`, 'invalidConfig', { cause: err }));
          }
          if (e.killed) return reject(new TransientError(`${what} did not finish within ${this.opts.timeoutMs} ms`, undefined, { cause: err }));
          const output = sanitizeOutput(`${stderr}\n${stdout}`, this.opts.redact);
          reject(new PermanentError(`${what} failed (exit ${String(e.code)}): ${output || 'no output'}`, 'easyrsaFailed'));
        },
      );
    });
  }

  async readIndex(): Promise<IndexEntry[]> {
    try {
      return parseIndex(await readFile(this.path('index.txt'), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PermanentError(`openvpn: ${this.path('index.txt')} does not exist; pkiDir must be an initialised easy-rsa PKI with a CA`, 'invalidPki', { cause: err });
      }
      throw err;
    }
  }
}
