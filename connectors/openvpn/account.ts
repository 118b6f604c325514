/**
 * Accounts are client certificates of the PKI, named by common name (the remote id). Creating one
 * issues a certificate and delivers the profile with its key through a one-time link; the key is
 * then removed from the PKI. Deprovisioning revokes the certificate, publishes a new CRL, removes the
 * client's ccd file and drops its live session. Every PKI change runs under the PKI lock.
 *
 * Bookkeeping of the connector lives in `<pkiDir>/scim-gateway/`: `lock` (the lock file),
 * `pending/<cn>` (a certificate issued whose profile has not reached its user yet), `issued/<serial>`
 * (certificates this connector issued, to tell them from ones issued by hand) and `crl-index.sha256`
 * (the index.txt the current CRL was generated from).
 */
import { execFile } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PermanentError, type AccountInput, type ConnectorLogger, type Deliver, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';
import type { CcdDirectory } from './ccd.js';
import { commonNameFor, type CommonNameSource, checkCommonName } from './common-name.js';
import { type EasyRsa, type IndexEntry, isServerCertificate, pemCertificate, stateOf } from './easyrsa.js';
import { type LockOptions, withLock } from './lock.js';
import type { LiveSession, ManagementClient } from './management.js';
import { buildProfile, type ProfileConfig } from './profile.js';

export interface AccountOptions {
  easyrsa: EasyRsa;
  ccd: CcdDirectory;
  management?: ManagementClient | undefined;
  crlPath: string;
  lock: Omit<LockOptions, 'path' | 'what'>;
  commonName: CommonNameSource;
  profile: ProfileConfig;
  /** Resolves the profile's tls-crypt / tls-auth key references. */
  secret: (reference: string) => Promise<string>;
  deliver?: Deliver | undefined;
  ttlMs?: number | undefined;
  pageSize: number;
  log: ConnectorLogger;
  /** Validity of a generated CRL in days; one with less than a third of it left is renewed. */
  crlDays: number;
}

/** When the CRL in `path` stops being valid (its nextUpdate), or undefined when it cannot be read. */
async function crlNextUpdate(path: string): Promise<Date | undefined> {
  return await new Promise((resolve) => {
    execFile('openssl', ['crl', '-noout', '-nextupdate', '-in', path], { timeout: 10_000 }, (err, stdout) => {
      const m = err ? null : /nextUpdate=(.+)/.exec(stdout);
      const at = m ? Date.parse(m[1]!.trim()) : NaN;
      resolve(Number.isNaN(at) ? undefined : new Date(at));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Removes the files; answers whether any of them existed. */
async function removeAll(paths: string[]): Promise<boolean> {
  let removed = false;
  for (const p of paths) {
    if (await exists(p)) {
      await rm(p, { force: true });
      removed = true;
    }
  }
  return removed;
}

/** Writes `content` to `path` so that a reader sees the old file or the new one, never a mix. */
export async function writeAtomically(path: string, content: string, mode = 0o644): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temp, content, { mode });
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

export class AccountOperations {
  private readonly rsa: EasyRsa;
  private readonly stateDir: string;

  constructor(private readonly opts: AccountOptions) {
    this.rsa = opts.easyrsa;
    this.stateDir = this.rsa.path('scim-gateway');
  }

  /** Runs `fn` holding the PKI lock (in-process queue and lock file). */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(join(this.stateDir, 'pending'), { recursive: true });
    await mkdir(join(this.stateDir, 'issued'), { recursive: true });
    return await withLock({ ...this.opts.lock, path: join(this.stateDir, 'lock'), what: `the PKI ${this.rsa.opts.pkiDir}` }, fn);
  }

  private files(cn: string) {
    return {
      cert: this.rsa.path('issued', `${cn}.crt`),
      key: this.rsa.path('private', `${cn}.key`),
      req: this.rsa.path('reqs', `${cn}.req`),
      pending: join(this.stateDir, 'pending', cn),
    };
  }

  /** The index entry of the certificate in issued/<cn>.crt, with its PEM, when there is one. */
  private async issued(cn: string, entries: IndexEntry[]): Promise<{ pem: string; entry: IndexEntry | undefined } | undefined> {
    const text = await readIfExists(this.files(cn).cert);
    if (text === undefined) return undefined;
    const pem = pemCertificate(text);
    const serial = new X509Certificate(pem).serialNumber.toUpperCase().replace(/^0+(?=.)/, '');
    const entry = entries.find((e) => e.serial.replace(/^0+(?=.)/, '') === serial);
    return { pem, entry };
  }

  private refuseServerCertificate(op: string, cn: string, pem: string): void {
    if (isServerCertificate(pem)) {
      throw new PermanentError(`openvpn: ${op}: the common name ${cn} belongs to a server certificate of the PKI; it cannot be a user's account`, 'conflict');
    }
  }

  private requireDeliver(op: string): Deliver {
    if (!this.opts.deliver) {
      throw new PermanentError(
        `openvpn: ${op}: a client profile must be delivered to its user, and this worker has no delivery: set PUBLIC_URL, DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET for the worker (docs/operations.md, Deliveries)`,
        'deliveryUnavailable',
      );
    }
    return this.opts.deliver;
  }

  /**
   * Regenerates the CRL when index.txt changed since the last one, or when it has less than a third
   * of its validity left (OpenVPN refuses every client once the installed CRL expires), and installs
   * it at crlPath when the installed file differs; answers whether anything changed.
   */
  async refreshCrl(op: string): Promise<boolean> {
    const index = await readFile(this.rsa.path('index.txt'));
    const digest = createHash('sha256').update(index).digest('hex');
    const marker = join(this.stateDir, 'crl-index.sha256');
    const crlFile = this.rsa.path('crl.pem');
    let changed = false;
    const renewBefore = Date.now() + (this.opts.crlDays * 86_400_000) / 3;
    const stale = async () => ((await crlNextUpdate(crlFile))?.getTime() ?? 0) < renewBefore;
    if ((await readIfExists(marker))?.trim() !== digest || !(await exists(crlFile)) || (await stale())) {
      await this.rsa.run(op, ['gen-crl']);
      await writeAtomically(marker, `${digest}\n`, 0o600);
      changed = true;
    }
    const crl = await readFile(crlFile, 'utf8');
    if ((await readIfExists(this.opts.crlPath)) !== crl) {
      try {
        await writeAtomically(this.opts.crlPath, crl);
      } catch (err) {
        throw new PermanentError(`openvpn: ${op}: cannot install the CRL at ${this.opts.crlPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'crlFailed', { cause: err });
      }
      changed = true;
    }
    return changed;
  }

  async create(input: AccountInput): Promise<WriteResult> {
    const op = 'createAccount';
    const cn = commonNameFor(input, this.opts.commonName, op);
    const f = this.files(cn);
    const prepared = await this.locked(async () => {
      const entries = await this.rsa.readIndex();
      const current = await this.issued(cn, entries);
      if (current) this.refuseServerCertificate(op, cn, current.pem);
      if (current?.entry && stateOf(current.entry) === 'valid') {
        if (!(await exists(f.pending))) return undefined;
        // Issued by an earlier attempt whose profile never reached the user: deliver it now.
        const key = await readIfExists(f.key);
        if (key === undefined) {
          await rm(f.pending, { force: true });
          return undefined;
        }
        this.requireDeliver(op);
        return { cert: current.pem, key, serial: current.entry.serial };
      }
      this.requireDeliver(op);
      let revokedOld = false;
      if (current?.entry && current.entry.status !== 'R') {
        // An expired certificate still holds the name: retire it so the name can be issued again.
        await this.rsa.run(op, ['revoke', cn, 'superseded']);
        revokedOld = true;
      } else if (current) {
        // A copy of a revoked (or unknown) certificate: no certificate of the name is in force.
        await rm(f.cert, { force: true });
      }
      // Left by an issue that was interrupted: they belong to no certificate.
      await removeAll([f.key, f.req]);
      await writeFile(f.pending, '', { mode: 0o600 });
      await this.rsa.run(op, ['build-client-full', cn, 'nopass']);
      const issued = await this.issued(cn, await this.rsa.readIndex());
      if (!issued?.entry) throw new PermanentError(`openvpn: ${op}: easyrsa reported success but the certificate of ${cn} is not in the PKI's index`, 'easyrsaFailed');
      await writeFile(join(this.stateDir, 'issued', issued.entry.serial), `${cn}\n`, { mode: 0o600 });
      if (revokedOld) await this.refreshCrl(op);
      return { cert: issued.pem, key: await readFile(f.key, 'utf8'), serial: issued.entry.serial };
    });
    if (!prepared) return { status: 'alreadyApplied', remoteId: cn };

    const deliver = this.requireDeliver(op);
    const profile = await this.profileFor(prepared.cert, prepared.key);
    const link = await deliver({ userId: input.userId, filename: `${cn}.ovpn`, contentType: 'application/x-openvpn-profile', content: profile, ttlMs: this.opts.ttlMs });
    // Delivered: the CA never needs the key again, so it is not kept.
    await this.locked(() => removeAll([f.key, f.req, f.pending]));
    this.opts.log.info('openvpn: client certificate issued and profile delivered', { commonName: cn, serial: prepared.serial, linkExpiresAt: link.expiresAt });
    return { status: 'applied', remoteId: cn };
  }

  private async profileFor(cert: string, key: string): Promise<string> {
    const p = this.opts.profile;
    const caPath = p.caFile ?? this.rsa.path('ca.crt');
    let ca: string;
    try {
      ca = await readFile(caPath, 'utf8');
    } catch (err) {
      throw new PermanentError(`openvpn: cannot read the CA certificate ${caPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'invalidConfig', { cause: err });
    }
    return buildProfile(p, {
      ca,
      cert,
      key,
      tlsCrypt: p.tlsCrypt ? await this.opts.secret(p.tlsCrypt) : undefined,
      tlsAuth: p.tlsAuth ? await this.opts.secret(p.tlsAuth) : undefined,
    });
  }

  /**
   * Revokes the client's certificate, publishes the CRL, removes its ccd file and drops its session.
   * With `purge`, also removes the files of its revoked certificates from the PKI (their index.txt
   * lines stay: the CRL is made from them).
   */
  async deprovision(op: 'disableAccount' | 'deleteAccount', remoteId: string, purge: boolean): Promise<WriteResult> {
    const cn = checkCommonName(remoteId, op);
    const f = this.files(cn);
    let changed = await this.locked(async () => {
      let changed = false;
      const entries = await this.rsa.readIndex();
      const current = await this.issued(cn, entries);
      if (current) {
        this.refuseServerCertificate(op, cn, current.pem);
        if (current.entry && current.entry.status !== 'R') await this.rsa.run(op, ['revoke', cn, 'cessationOfOperation']);
        else await rm(f.cert, { force: true });
        changed = true;
      }
      if (await removeAll([f.key, f.req, f.pending])) changed = true;
      if (await this.refreshCrl(op)) changed = true;
      if (purge) {
        for (const e of (await this.rsa.readIndex()).filter((e) => e.commonName === cn && e.status === 'R')) {
          const gone = await removeAll([
            this.rsa.path('revoked', 'certs_by_serial', `${e.serial}.crt`),
            this.rsa.path('revoked', 'private_by_serial', `${e.serial}.key`),
            this.rsa.path('revoked', 'reqs_by_serial', `${e.serial}.req`),
            this.rsa.path('certs_by_serial', `${e.serial}.pem`),
          ]);
          if (gone) changed = true;
        }
      }
      return changed;
    });
    if (await this.opts.ccd.remove(cn)) changed = true;
    if (this.opts.management && (await this.opts.management.kill(cn)) === 'killed') changed = true;
    return { status: changed ? 'applied' : 'alreadyApplied', remoteId: cn };
  }

  /**
   * One page of accounts: one per common name in index.txt (its valid certificate, or else its latest
   * one), sorted by name; the cursor is the last name of the previous page. Server certificates are
   * left out. Live sessions come from the management interface when it is configured.
   */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const op = 'listAccounts';
    if (cursor !== undefined && (cursor === '' || cursor.length > 256)) throw new PermanentError(`openvpn: ${op}: invalid cursor`, 'invalidCursor');
    // Each reconciliation starts here, so a scheduled reconcile keeps the CRL from expiring.
    if (cursor === undefined) {
      const renewed = await this.locked(() => this.refreshCrl(op));
      if (renewed) this.opts.log.info('openvpn: CRL renewed and installed', { crlPath: this.opts.crlPath });
    }
    const byName = new Map<string, IndexEntry[]>();
    for (const e of await this.rsa.readIndex()) {
      if (!e.commonName) continue;
      byName.set(e.commonName, [...(byName.get(e.commonName) ?? []), e]);
    }
    const names = [...byName.keys()].filter((n) => cursor === undefined || n > cursor).sort();
    const [sessions, ccdFiles] = await Promise.all([this.opts.management?.status(), this.opts.ccd.list()]);
    const ccd = new Set(ccdFiles);
    const items: RemoteAccount[] = [];
    let last: string | undefined;
    let i = 0;
    for (; i < names.length && items.length < this.opts.pageSize; i++) {
      const cn = names[i]!;
      last = cn;
      const entries = byName.get(cn)!;
      const chosen = pickCurrent(entries);
      const pem = await this.certificateFile(cn, chosen);
      if (pem && isServerCertificate(pem)) continue;
      items.push(await this.describe(cn, chosen, entries.length - 1, sessions, ccd.has(cn)));
    }
    return { items, next: i < names.length ? last : undefined };
  }

  private async certificateFile(cn: string, entry: IndexEntry): Promise<string | undefined> {
    const candidates =
      entry.status === 'R'
        ? [this.rsa.path('revoked', 'certs_by_serial', `${entry.serial}.crt`)]
        : [this.rsa.path('certs_by_serial', `${entry.serial}.pem`), this.files(cn).cert];
    for (const path of candidates) {
      const text = await readIfExists(path);
      if (text !== undefined && text.includes('BEGIN CERTIFICATE')) return pemCertificate(text);
    }
    return undefined;
  }

  private async describe(cn: string, entry: IndexEntry, older: number, sessions: LiveSession[] | undefined, hasCcd: boolean): Promise<RemoteAccount> {
    const state = stateOf(entry);
    const mine = sessions?.filter((s) => s.commonName === cn);
    const connected = mine?.some((s) => s.established);
    const managed = await exists(join(this.stateDir, 'issued', entry.serial));
    const warnings: string[] = [];
    if (state !== 'valid' && connected) warnings.push(`${state} certificate still connected`);
    if (state !== 'valid' && hasCcd) warnings.push(`ccd file present for a ${state} certificate`);
    if (!managed) warnings.push('certificate not issued by the gateway');
    for (const w of warnings) if (w !== 'certificate not issued by the gateway') this.opts.log.warn(`openvpn: ${cn}: ${w}`, { commonName: cn });
    return {
      remoteId: cn,
      userName: cn,
      active: state === 'valid',
      attributes: {
        state,
        serial: entry.serial,
        expiresAt: entry.expiresAt.toISOString(),
        ...(entry.revokedAt && { revokedAt: entry.revokedAt.toISOString() }),
        ...(entry.revocationReason && { revocationReason: entry.revocationReason }),
        olderCertificates: older,
        managed,
        ccd: hasCcd,
        ...(mine && {
          connected,
          sessions: mine.map((s) => ({ established: s.established, realAddress: s.realAddress, virtualAddress: s.virtualAddress, connectedSince: s.connectedSince })),
        }),
        ...(warnings.length > 0 && { warnings }),
      },
    };
  }
}

/** The certificate that stands for a name: a valid one (the latest expiring), else the latest issued. */
function pickCurrent(entries: IndexEntry[]): IndexEntry {
  const valid = entries.filter((e) => stateOf(e) === 'valid').sort((a, b) => b.expiresAt.getTime() - a.expiresAt.getTime());
  return valid[0] ?? entries[entries.length - 1]!;
}
