/**
 * Entitlements as client-config-dir files. With `ccd-exclusive` the server admits a client only when
 * a file named after its certificate's common name exists in the directory, so the file *is* the
 * access. Each entitlement the user holds is one marked block in that file (the routes and DNS
 * servers pushed to the client); the file goes when the last block goes. Files are replaced
 * atomically (temp file + rename), so the server never reads half a file.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, type EntitlementRef } from '@scim-gateway/connector-sdk';

export const openvpnEntitlementSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$',
      description: 'A label for this access (e.g. "office-network"), written into the client\'s ccd file beside its routes.',
    }),
    routes: Type.Optional(
      Type.Array(Type.String({ maxLength: 43, description: 'An IPv4 or IPv6 network in CIDR notation, e.g. 10.20.0.0/16.' }), {
        maxItems: 100,
        description: 'Networks pushed to the client as routes through the tunnel (push "route …" / push "route-ipv6 …").',
      }),
    ),
    dnsServers: Type.Optional(
      Type.Array(Type.String({ maxLength: 39, description: 'An IPv4 or IPv6 address.' }), {
        maxItems: 4,
        description: 'DNS servers pushed to the client (push "dhcp-option DNS …").',
      }),
    ),
  },
  { additionalProperties: false },
);
export type OpenvpnEntitlement = Static<typeof openvpnEntitlementSchema>;

const BLOCK_BEGIN = '# scim-gateway entitlement ';
const BLOCK_END = '# scim-gateway end ';

function ipv4Mask(bits: number): string {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join('.');
}

function routeLine(cidr: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const family = m ? isIP(m[1]!) : 0;
  const bits = m ? Number(m[2]) : -1;
  if (family === 4 && bits >= 0 && bits <= 32) return `push "route ${m![1]} ${ipv4Mask(bits)}"`;
  if (family === 6 && bits >= 0 && bits <= 128) return `push "route-ipv6 ${m![1]}/${bits}"`;
  throw new PermanentError(`openvpn: entitlement route ${JSON.stringify(cidr)} is not an IPv4 or IPv6 network in CIDR notation`, 'invalidEntitlement');
}

/** The entitlement's target, checked against the schema and the address syntax. */
export function parseEntitlement(entitlement: EntitlementRef): OpenvpnEntitlement {
  if (!Value.Check(openvpnEntitlementSchema, entitlement.target)) {
    const problems = [...Value.Errors(openvpnEntitlementSchema, entitlement.target)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
    throw new PermanentError(`openvpn: invalid entitlement target: ${problems.join('; ')}`, 'invalidEntitlement');
  }
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(entitlement.id)) {
    throw new PermanentError(`openvpn: entitlement id ${JSON.stringify(entitlement.id)} cannot be written into a ccd file`, 'invalidEntitlement');
  }
  return entitlement.target;
}

/** The block one entitlement contributes to a client's ccd file. */
export function entitlementBlock(entitlement: EntitlementRef): string {
  const target = parseEntitlement(entitlement);
  const lines = [`${BLOCK_BEGIN}${entitlement.id} ${target.name}`];
  for (const route of target.routes ?? []) lines.push(routeLine(route));
  for (const dns of target.dnsServers ?? []) {
    if (!isIP(dns)) throw new PermanentError(`openvpn: entitlement DNS server ${JSON.stringify(dns)} is not an IP address`, 'invalidEntitlement');
    lines.push(`push "dhcp-option DNS ${dns}"`);
  }
  lines.push(`${BLOCK_END}${entitlement.id}`);
  return `${lines.join('\n')}\n`;
}

interface CcdFile {
  /** Entitlement id → its block, in file order. */
  blocks: Map<string, string>;
  /** Lines outside any block (written by hand). */
  other: string;
}

export function parseCcd(text: string): CcdFile {
  const blocks = new Map<string, string>();
  const other: string[] = [];
  let current: { id: string; lines: string[] } | undefined;
  for (const line of text.split('\n')) {
    if (!current && line.startsWith(BLOCK_BEGIN)) {
      current = { id: line.slice(BLOCK_BEGIN.length).split(' ')[0]!, lines: [line] };
      continue;
    }
    if (current) {
      current.lines.push(line);
      if (line === `${BLOCK_END}${current.id}`) {
        blocks.set(current.id, `${current.lines.join('\n')}\n`);
        current = undefined;
      }
      continue;
    }
    if (line.trim()) other.push(line);
  }
  // An unterminated block is kept as hand-written text rather than silently dropped.
  if (current) other.push(...current.lines);
  return { blocks, other: other.length > 0 ? `${other.join('\n')}\n` : '' };
}

function render(file: CcdFile): string {
  return `${file.other}${[...file.blocks.values()].join('')}`;
}

export type CcdChange = 'applied' | 'alreadyApplied';

export class CcdDirectory {
  constructor(readonly dir: string) {}

  path(commonName: string): string {
    return join(this.dir, commonName);
  }

  async read(commonName: string): Promise<string | undefined> {
    try {
      return await readFile(this.path(commonName), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new PermanentError(`openvpn: cannot read ccd file for ${commonName}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'ccdFailed', { cause: err });
    }
  }

  private async write(commonName: string, content: string): Promise<void> {
    const path = this.path(commonName);
    const temp = join(this.dir, `.${commonName}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(temp, content, { mode: 0o644 });
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      throw new PermanentError(`openvpn: cannot write ccd file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'ccdFailed', { cause: err });
    }
  }

  /** Adds (or brings up to date) the entitlement's block in the client's file. */
  async grant(commonName: string, entitlement: EntitlementRef): Promise<CcdChange> {
    const block = entitlementBlock(entitlement);
    const text = await this.read(commonName);
    const file = parseCcd(text ?? '');
    if (file.blocks.get(entitlement.id) === block) return 'alreadyApplied';
    file.blocks.set(entitlement.id, block);
    await this.write(commonName, render(file));
    return 'applied';
  }

  /** Removes the entitlement's block; answers whether the file (the access) is gone as well. */
  async revoke(commonName: string, entitlement: EntitlementRef): Promise<{ change: CcdChange; accessEnded: boolean }> {
    parseEntitlement(entitlement);
    const text = await this.read(commonName);
    if (text === undefined) return { change: 'alreadyApplied', accessEnded: false };
    const file = parseCcd(text);
    if (!file.blocks.delete(entitlement.id)) return { change: 'alreadyApplied', accessEnded: false };
    if (file.blocks.size === 0 && !file.other.trim()) {
      await this.remove(commonName);
      return { change: 'applied', accessEnded: true };
    }
    await this.write(commonName, render(file));
    return { change: 'applied', accessEnded: false };
  }

  /** Deletes the client's file; answers whether there was one. */
  async remove(commonName: string): Promise<boolean> {
    try {
      await rm(this.path(commonName));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new PermanentError(`openvpn: cannot remove ccd file for ${commonName}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'ccdFailed', { cause: err });
    }
  }

  /** Client files in the directory, sorted (temp files excluded). */
  async list(): Promise<string[]> {
    try {
      return (await readdir(this.dir, { withFileTypes: true }))
        .filter((e) => e.isFile() && !e.name.startsWith('.'))
        .map((e) => e.name)
        .sort();
    } catch (err) {
      throw new PermanentError(`openvpn: cannot list ccd directory ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'ccdFailed', { cause: err });
    }
  }

  /** Entitlement ids whose block is in the client's file. */
  async entitlementsOf(commonName: string): Promise<string[]> {
    const text = await this.read(commonName);
    return text === undefined ? [] : [...parseCcd(text).blocks.keys()];
  }
}
