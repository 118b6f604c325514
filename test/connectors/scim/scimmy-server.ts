/**
 * A real third-party SCIM 2.0 service for connector tests: SCIMMY (the SCIM library) served by
 * scimmy-routers (its Express routers), with resource handlers over in-memory maps. Protocol
 * behaviour (filters, paging, PATCH, error bodies, ServiceProviderConfig) is SCIMMY's, not ours;
 * this file only stores resources and adds what tests need around it: bearer authentication,
 * a request log, injected failures, and a switch that makes the target refuse PATCH.
 *
 * SCIMMY keeps its resource declarations and service provider configuration in module-global
 * state, so the handlers are declared once per process and find each server's store through the
 * router's `context`, which lets several servers run side by side in one test file.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import SCIMMY from 'scimmy';
import SCIMMYRouters from 'scimmy-routers';

/** A stored resource, as plain JSON (what SCIMMY hands to ingress, minus its schema wrapper). */
export type StoredResource = Record<string, unknown> & { id: string };

export interface InjectedFailure {
  /** HTTP status to answer with (e.g. 429, 500, 403). */
  status: number;
  /** Retry-After header value, in seconds or as an HTTP date. */
  retryAfter?: string;
  /** The SCIM error's `detail`. */
  detail?: string;
  scimType?: string;
  /** Only requests with this method are failed (default: any). */
  method?: string;
  /** Wait this long before answering (for timeout tests); with status 0 the request then proceeds. */
  delayMs?: number;
}

export interface LoggedRequest {
  method: string;
  /** Path below the SCIM base URL, e.g. "/Users/123". */
  path: string;
  query: Record<string, unknown>;
  authorization: string | undefined;
  contentType: string | undefined;
  body: unknown;
}

interface Store {
  users: Map<string, StoredResource>;
  groups: Map<string, StoredResource>;
}

export interface ScimmyServer {
  /** The SCIM base URL, e.g. http://127.0.0.1:41234/scim/v2 */
  baseUrl: string;
  token: string;
  users: Map<string, StoredResource>;
  groups: Map<string, StoredResource>;
  /** Every request that reached the server, oldest first (including failed and unauthenticated ones). */
  requests: LoggedRequest[];
  /** Answers the next `count` matching requests with `failure` instead of serving them. */
  failNext(count: number, failure: InjectedFailure): void;
  /** Drops any failures not yet consumed. */
  clearFailures(): void;
  /** Whether PATCH is advertised in ServiceProviderConfig and accepted (default true). */
  patchSupported: boolean;
  /** Adds a user directly to the store (bypassing HTTP), answering it. */
  seedUser(user: Omit<StoredResource, 'id'> & { userName: string }): StoredResource;
  /** Adds a group directly to the store (bypassing HTTP), answering it. */
  seedGroup(group: Omit<StoredResource, 'id'> & { displayName: string }): StoredResource;
  findUserByName(userName: string): StoredResource | undefined;
  findGroupByName(displayName: string): StoredResource | undefined;
  close(): Promise<void>;
}

/** SCIM attributes that are case-insensitive (caseExact false) in the core schemas. */
const sameText = (a: unknown, b: unknown) => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();

/** Turns a SCIMMY schema instance into plain JSON for storage. */
function plain(instance: unknown): Record<string, unknown> {
  return JSON.parse(JSON.stringify(instance)) as Record<string, unknown>;
}

function storeOf(ctx: unknown): Store {
  const store = (ctx as { store?: Store } | undefined)?.store;
  if (!store) throw new SCIMMY.Types.Error(500, null as unknown as string, 'no store in request context');
  return store;
}

function notFound(id: string | undefined): never {
  throw new SCIMMY.Types.Error(404, null as unknown as string, `Resource ${id} not found`);
}

function conflict(detail: string): never {
  throw new SCIMMY.Types.Error(409, 'uniqueness', detail);
}

let declared = false;

/** Declares the User and Group handlers with SCIMMY, once per process. */
function declareResources(): void {
  if (declared) return;
  declared = true;

  SCIMMY.Resources.declare(SCIMMY.Resources.User)
    .ingress((resource, instance, ctx) => {
      const { users } = storeOf(ctx);
      const data = plain(instance);
      for (const other of users.values()) {
        if (other.id !== resource.id && sameText(other.userName, data.userName)) conflict(`userName ${String(data.userName)} is already taken`);
      }
      if (resource.id) {
        const existing = users.get(resource.id) ?? notFound(resource.id);
        const updated = { ...data, id: existing.id, meta: existing.meta } as StoredResource;
        users.set(existing.id, updated);
        return updated as never;
      }
      const now = new Date();
      const created = { ...data, id: randomUUID(), meta: { created: now, lastModified: now } } as StoredResource;
      users.set(created.id, created);
      return created as never;
    })
    .egress((resource, ctx) => {
      const { users } = storeOf(ctx);
      if (resource.id) return (users.get(resource.id) ?? notFound(resource.id)) as never;
      const all = [...users.values()];
      return (resource.filter ? resource.filter.match(all) : all) as never;
    })
    .degress((resource, ctx) => {
      const { users, groups } = storeOf(ctx);
      const id = resource.id ?? notFound(resource.id);
      if (!users.delete(id)) notFound(id);
      // Like real services, deleting a user takes it out of every group.
      for (const group of groups.values()) {
        if (Array.isArray(group.members)) group.members = (group.members as { value: string }[]).filter((m) => m.value !== id);
      }
    });

  SCIMMY.Resources.declare(SCIMMY.Resources.Group)
    .ingress((resource, instance, ctx) => {
      const { groups } = storeOf(ctx);
      const data = plain(instance);
      for (const other of groups.values()) {
        if (other.id !== resource.id && sameText(other.displayName, data.displayName)) conflict(`displayName ${String(data.displayName)} is already taken`);
      }
      if (resource.id) {
        const existing = groups.get(resource.id) ?? notFound(resource.id);
        const updated = { ...data, id: existing.id, meta: existing.meta } as StoredResource;
        groups.set(existing.id, updated);
        return updated as never;
      }
      const now = new Date();
      const created = { ...data, id: randomUUID(), meta: { created: now, lastModified: now } } as StoredResource;
      groups.set(created.id, created);
      return created as never;
    })
    .egress((resource, ctx) => {
      const { groups } = storeOf(ctx);
      if (resource.id) return (groups.get(resource.id) ?? notFound(resource.id)) as never;
      const all = [...groups.values()];
      return (resource.filter ? resource.filter.match(all) : all) as never;
    })
    .degress((resource, ctx) => {
      const { groups } = storeOf(ctx);
      const id = resource.id ?? notFound(resource.id);
      if (!groups.delete(id)) notFound(id);
    });
}

function scimError(res: Response, status: number, detail: string, scimType?: string): void {
  const body: Record<string, unknown> = { schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: String(status), detail };
  if (scimType) body.scimType = scimType;
  res.status(status).type('application/scim+json').send(JSON.stringify(body));
}

export interface ScimmyServerOptions {
  /** The bearer token it accepts (default: a random one). */
  token?: string;
  /** Port on 127.0.0.1 (default: any free one). */
  port?: number;
  /** Resources to start with (e.g. what a previous run saved). */
  initial?: { users?: StoredResource[]; groups?: StoredResource[] };
  /** Called after every request that may have changed the store (any method but GET), once answered. */
  onChange?: () => void;
}

/** Starts a SCIMMY server on 127.0.0.1; `token` is the bearer token it accepts. */
export async function startScimmyServer(opts: ScimmyServerOptions = {}): Promise<ScimmyServer> {
  declareResources();
  const token = opts.token ?? `scimmy-${randomUUID()}`;
  const store: Store = {
    users: new Map((opts.initial?.users ?? []).map((u) => [u.id, u])),
    groups: new Map((opts.initial?.groups ?? []).map((g) => [g.id, g])),
  };
  const requests: LoggedRequest[] = [];
  let failures: { remaining: number; failure: InjectedFailure }[] = [];

  const app = express();
  const mount = '/scim/v2';

  // Express 5 makes `req.query` a getter that parses the URL anew on every access, so the routers'
  // conversion of startIndex/count to numbers would be lost; an own, writable copy keeps it.
  app.use((req: Request, _res: Response, next: NextFunction) => {
    Object.defineProperty(req, 'query', { value: { ...req.query }, writable: true, enumerable: true, configurable: true });
    next();
  });

  // Request log, injected failures and the PATCH switch, ahead of SCIMMY.
  app.use(mount, express.json({ type: ['application/scim+json', 'application/json'] }), (req: Request, res: Response, next: NextFunction) => {
    const onChange = opts.onChange;
    if (onChange && req.method !== 'GET') res.on('finish', () => onChange());
    requests.push({
      method: req.method,
      path: req.path,
      query: { ...(req.query as Record<string, unknown>) },
      authorization: req.header('authorization'),
      contentType: req.header('content-type'),
      body: req.body as unknown,
    });
    // SCIMMY's configuration is process-wide; set this server's view of it for this request.
    SCIMMY.Config.set('patch', server.patchSupported);

    const slot = failures.find((f) => f.remaining > 0 && (!f.failure.method || f.failure.method.toUpperCase() === req.method));
    const answer = () => {
      if (slot && slot.failure.status > 0) {
        const { status, retryAfter, detail, scimType } = slot.failure;
        if (retryAfter !== undefined) res.setHeader('Retry-After', retryAfter);
        scimError(res, status, detail ?? `injected failure ${status}`, scimType);
        return;
      }
      if (!server.patchSupported && req.method === 'PATCH') {
        scimError(res, 501, 'PATCH is not supported by this service provider');
        return;
      }
      next();
    };
    if (slot) {
      slot.remaining--;
      failures = failures.filter((f) => f.remaining > 0);
    }
    if (slot?.failure.delayMs) setTimeout(answer, slot.failure.delayMs);
    else answer();
  });

  app.use(
    mount,
    new SCIMMYRouters({
      type: 'bearer',
      handler: (req) => {
        if (req.header('authorization') !== `Bearer ${token}`) throw new Error('Invalid or missing bearer token');
        return 'scim-client';
      },
      context: () => ({ store }),
    }),
  );

  const http: Server = await new Promise((resolve, reject) => {
    const s = app.listen(opts.port ?? 0, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const { port } = http.address() as AddressInfo;

  const server: ScimmyServer = {
    baseUrl: `http://127.0.0.1:${port}${mount}`,
    token,
    users: store.users,
    groups: store.groups,
    requests,
    patchSupported: true,
    failNext(count, failure) {
      failures.push({ remaining: count, failure });
    },
    clearFailures() {
      failures = [];
    },
    seedUser(user) {
      const stored = { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], active: true, ...user, id: randomUUID() } as StoredResource;
      store.users.set(stored.id, stored);
      return stored;
    },
    seedGroup(group) {
      const stored = { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], ...group, id: randomUUID() } as StoredResource;
      store.groups.set(stored.id, stored);
      return stored;
    },
    findUserByName(userName) {
      return [...store.users.values()].find((u) => sameText(u.userName, userName));
    },
    findGroupByName(displayName) {
      return [...store.groups.values()].find((g) => sameText(g.displayName, displayName));
    },
    async close() {
      http.closeAllConnections();
      await new Promise<void>((resolve, reject) => http.close((err) => (err ? reject(err) : resolve())));
    },
  };
  return server;
}
