/**
 * A fake of the chat workspace API the walk-through's connector talks to: members and user groups in
 * maps, bearer-token authentication, listings paged by `limit` and an opaque `cursor`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Member {
  id: string;
  handle: string;
  deactivated: boolean;
}

export interface FakeChat {
  url: string;
  members: Map<string, Member>;
  groups: Map<string, Set<string>>;
  close(): Promise<void>;
}

export async function startFakeChat(opts: { token: string }): Promise<FakeChat> {
  const members = new Map<string, Member>();
  const groups = new Map<string, Set<string>>();
  let nextId = 1;
  const group = (name: string) => {
    let g = groups.get(name);
    if (!g) groups.set(name, (g = new Set()));
    return g;
  };
  const page = <T>(all: T[], q: URLSearchParams) => {
    const start = Number(q.get('cursor') ?? 0);
    const end = start + Number(q.get('limit') ?? 100);
    return { slice: all.slice(start, end), next_cursor: end < all.length ? String(end) : '' };
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${opts.token}`) return send(401, { error: 'invalid_auth' });
    const url = new URL(req.url ?? '/', 'http://fake');
    const parts = url.pathname.replace(/^\/api\//, '/').split('/').filter(Boolean).map(decodeURIComponent);
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const route = `${req.method} /${parts.map((p, i) => (i % 2 === 1 ? ':' : p)).join('/')}`;
    const member = members.get(parts[1] ?? '');
    switch (route) {
      case 'GET /auth.test':
        return send(200, { ok: true });
      case 'GET /members': {
        const p = page([...members.values()], url.searchParams);
        return send(200, { members: p.slice, next_cursor: p.next_cursor });
      }
      case 'POST /members': {
        const { handle } = JSON.parse(body) as { handle: string };
        const m = { id: `U${String(nextId++).padStart(6, '0')}`, handle, deactivated: false };
        members.set(m.id, m);
        return send(201, m);
      }
      case 'GET /members/:':
        return member ? send(200, member) : send(404, { error: 'user_not_found' });
      case 'DELETE /members/:':
        return member && members.delete(member.id) ? send(204) : send(404, { error: 'user_not_found' });
      case 'POST /members/:/deactivate':
      case 'POST /members/:/reactivate':
        if (!member) return send(404, { error: 'user_not_found' });
        member.deactivated = parts[2] === 'deactivate';
        return send(204);
      case 'DELETE /members/:/groups':
        for (const g of groups.values()) g.delete(parts[1]!);
        return send(204);
      case 'GET /usergroups/:/members': {
        const only = url.searchParams.get('only');
        const ids = [...group(parts[1]!)].filter((id) => !only || id === only).sort();
        const p = page(ids, url.searchParams);
        return send(200, { ids: p.slice, next_cursor: p.next_cursor });
      }
      case 'PUT /usergroups/:/members/:':
        if (!members.has(parts[3]!)) return send(404, { error: 'user_not_found' });
        group(parts[1]!).add(parts[3]!);
        return send(204);
      case 'DELETE /usergroups/:/members/:':
        return group(parts[1]!).delete(parts[3]!) ? send(204) : send(404, { error: 'not_in_group' });
    }
    if (req.method === 'GET' && parts[0] === 'members' && parts[1] === 'by-handle' && parts[2]) {
      const m = [...members.values()].find((x) => x.handle === parts[2]);
      return m ? send(200, m) : send(404, { error: 'user_not_found' });
    }
    return send(404, { error: 'unknown_method' });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api`,
    members,
    groups,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
