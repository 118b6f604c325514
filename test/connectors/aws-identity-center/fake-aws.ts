/**
 * A stateful fake of the two AWS APIs the aws-identity-center connector uses, for tests: Identity
 * Store (`X-Amz-Target: AWSIdentityStore.<Operation>`, signing name `identitystore`) and SSO Admin
 * (`SWBExternalService.<Operation>`, signing name `sso`), both AWS JSON 1.1 over POST / on one plain
 * HTTP server on 127.0.0.1.
 *
 * - Every request's SigV4 signature is recomputed with @smithy/signature-v4 from the received
 *   method, path, signed headers and body, with the secret the fake holds for the access key id,
 *   and compared with the Authorization header. An unknown key is UnrecognizedClientException; a
 *   mismatch, a wrong credential scope or an X-Amz-Date more than five minutes off is
 *   InvalidSignatureException (403, AWS's error shape).
 * - Uniqueness as AWS keeps it: userName and group displayName (case-insensitive), one membership per
 *   user and group. Modeled errors in the services' shapes (`__type`, `Message`, x-amzn-errortype).
 * - Lists page with an opaque NextToken and never more than `pageLimit` items, whatever MaxResults.
 * - Account assignments are asynchronous: with `assignmentLatency` N, a create or delete answers
 *   IN_PROGRESS and takes effect after N further SSO Admin requests.
 * - Failures can be injected per operation (throttling with Retry-After, access denied, 500, …).
 */
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/protocol-http';

/** node:crypto behind the hash interface @smithy/signature-v4 expects (HMAC when given a secret). */
export class NodeSha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuffer(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export interface FakeUser {
  UserId: string;
  UserName: string;
  DisplayName: string;
  Name: { GivenName?: string; FamilyName?: string };
  Emails: Array<{ Value?: string; Type?: string; Primary?: boolean }>;
  UserStatus?: 'ENABLED' | 'DISABLED';
}
export interface FakeGroup {
  GroupId: string;
  DisplayName: string;
  Description?: string;
}
export interface FakeMembership {
  MembershipId: string;
  GroupId: string;
  UserId: string;
}
export interface FakeAssignment {
  AccountId: string;
  PermissionSetArn: string;
  PrincipalType: 'USER' | 'GROUP';
  PrincipalId: string;
}

export interface InjectedFailure {
  /** Only this operation fails (e.g. "CreateGroupMembership"); any operation when absent. */
  operation?: string;
  status: number;
  type: string;
  message: string;
  /** Sent as the Retry-After header (seconds), which the SDK reads into RetryAfterSeconds. */
  retryAfterSeconds?: number;
  reason?: string;
}

export interface LoggedRequest {
  service: 'identitystore' | 'sso';
  operation: string;
  accessKeyId: string | undefined;
  body: Record<string, unknown>;
  /** The status answered. */
  status: number;
}

export interface FakeAwsOptions {
  region?: string;
  identityStoreId?: string;
  /** Access key id → secret access key. */
  keys?: Record<string, string>;
  /** The most items any list answers in one page. */
  pageLimit?: number;
}

class AwsError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    /** Authentication errors come from AWS's front end: lowercase `message`, namespaced type. */
    readonly front = false,
  ) {
    super(message);
  }
}

const TARGETS = { AWSIdentityStore: 'identitystore', SWBExternalService: 'sso' } as const;
const MAX_SKEW_MS = 5 * 60 * 1000;

export class FakeAws {
  readonly region: string;
  readonly identityStoreId: string;
  readonly instanceArn: string;
  readonly keys: Map<string, string>;
  pageLimit: number;
  /** SSO Admin requests before an assignment request completes; 0 completes at once. */
  assignmentLatency = 0;
  /** When set, assignment requests end FAILED with this reason. */
  assignmentFailure: string | undefined;

  readonly users = new Map<string, FakeUser>();
  readonly groups = new Map<string, FakeGroup>();
  readonly memberships = new Map<string, FakeMembership>();
  readonly assignments: FakeAssignment[] = [];
  readonly permissionSets = new Set<string>();
  readonly pending: Array<{ requestId: string; kind: 'create' | 'delete'; assignment: FakeAssignment; remaining: number }> = [];
  readonly requests: LoggedRequest[] = [];
  private failures: Array<InjectedFailure & { count: number }> = [];
  private server!: Server;
  endpoint = '';

  constructor(opts: FakeAwsOptions = {}) {
    this.region = opts.region ?? 'eu-west-1';
    this.identityStoreId = opts.identityStoreId ?? 'd-0123456789';
    this.instanceArn = 'arn:aws:sso:::instance/ssoins-0123456789abcdef';
    this.keys = new Map(Object.entries(opts.keys ?? { AKIAFAKEFAKEFAKE0001: 'fake-secret-access-key-0001-abcdefghijklmnop' }));
    this.pageLimit = opts.pageLimit ?? 3;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next `count` requests (of `operation`, if given) fail as described. */
  failNext(count: number, failure: InjectedFailure): void {
    this.failures.push({ ...failure, count });
  }

  clearFailures(): void {
    this.failures = [];
  }

  requestsSince(mark: number): LoggedRequest[] {
    return this.requests.slice(mark);
  }

  // ---- seeding and inspection (tests change the "real" directory behind the connector's back) ----

  seedUser(userName: string, extra: Partial<FakeUser> = {}): FakeUser {
    const user: FakeUser = { UserId: this.newId(), UserName: userName, DisplayName: userName, Name: { GivenName: 'Seed', FamilyName: 'User' }, Emails: [], ...extra };
    this.users.set(user.UserId, user);
    return user;
  }

  seedGroup(displayName: string): FakeGroup {
    const group: FakeGroup = { GroupId: this.newId(), DisplayName: displayName };
    this.groups.set(group.GroupId, group);
    return group;
  }

  addMember(groupId: string, userId: string): FakeMembership {
    const m: FakeMembership = { MembershipId: this.newId(), GroupId: groupId, UserId: userId };
    this.memberships.set(m.MembershipId, m);
    return m;
  }

  seedPermissionSet(suffix = randomUUID().replace(/-/g, '').slice(0, 16)): string {
    const arn = `arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-${suffix}`;
    this.permissionSets.add(arn);
    return arn;
  }

  userByName(userName: string): FakeUser | undefined {
    return [...this.users.values()].find((u) => u.UserName.toLowerCase() === userName.toLowerCase());
  }

  groupByName(displayName: string): FakeGroup | undefined {
    return [...this.groups.values()].find((g) => g.DisplayName.toLowerCase() === displayName.toLowerCase());
  }

  /** UserIds of the members of the named group. */
  membersOf(displayName: string): string[] {
    const g = this.groupByName(displayName);
    return g ? [...this.memberships.values()].filter((m) => m.GroupId === g.GroupId).map((m) => m.UserId) : [];
  }

  hasAssignment(a: Omit<FakeAssignment, 'PrincipalType'>): boolean {
    return this.assignments.some((x) => x.AccountId === a.AccountId && x.PermissionSetArn === a.PermissionSetArn && x.PrincipalId === a.PrincipalId);
  }

  private newId(): string {
    return `${this.identityStoreId.slice(2)}-${randomUUID()}`;
  }

  // ---- HTTP ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const target = String(req.headers['x-amz-target'] ?? '');
    const [prefix, operation = ''] = target.split('.');
    const service = TARGETS[prefix as keyof typeof TARGETS];
    let accessKeyId: string | undefined;
    let body: Record<string, unknown> = {};
    let status = 200;
    let answer: unknown = {};
    const headers: Record<string, string> = {};
    try {
      if (req.method !== 'POST' || req.url !== '/') throw new AwsError(404, 'UnknownOperationException', 'only POST / is served');
      if (!service) throw new AwsError(400, 'UnknownOperationException', `unknown target ${target}`);
      if (req.headers['content-type'] !== 'application/x-amz-json-1.1') throw new AwsError(400, 'SerializationException', 'content-type must be application/x-amz-json-1.1');
      // Logged even when refused, so tests can see which key a client signed with.
      accessKeyId = /Credential=([^/,\s]+)\//.exec(String(req.headers.authorization ?? ''))?.[1];
      await this.verifySignature(req, raw, service);
      try {
        body = raw.length > 0 ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
      } catch {
        throw new AwsError(400, 'SerializationException', 'body is not JSON');
      }
      const failure = this.failures.find((f) => f.count > 0 && (!f.operation || f.operation === operation));
      if (failure) {
        failure.count--;
        if (failure.retryAfterSeconds !== undefined) headers['retry-after'] = String(failure.retryAfterSeconds);
        throw new AwsError(failure.status, failure.type, failure.message, failure.reason ? { Reason: failure.reason } : {});
      }
      answer = service === 'identitystore' ? this.identityStore(operation, body) : this.ssoAdmin(operation, body);
    } catch (err) {
      if (!(err instanceof AwsError)) throw err;
      status = err.status;
      headers['x-amzn-errortype'] = `${err.type}:http://internal.amazon.com/coral/com.amazonaws.${service ?? 'unknown'}/`;
      answer = err.front ? { __type: `com.amazon.coral.service#${err.type}`, message: err.message } : { __type: err.type, Message: err.message, ...err.extra };
    }
    this.requests.push({ service: service ?? 'identitystore', operation, accessKeyId, body, status });
    const text = JSON.stringify(answer);
    res.writeHead(status, { ...headers, 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID(), 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** Recomputes the request's SigV4 signature, or throws AWS's 403. */
  private async verifySignature(req: IncomingMessage, body: Buffer, service: string): Promise<void> {
    const auth = String(req.headers.authorization ?? '');
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) throw new AwsError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token', {}, true);
    const [, keyId, scopeDate, region, scopeService, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string, string];
    const secret = this.keys.get(keyId);
    if (!secret) throw new AwsError(403, 'UnrecognizedClientException', 'The security token included in the request is invalid.', {}, true);
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (!dm) throw new AwsError(403, 'InvalidSignatureException', 'X-Amz-Date is missing or malformed', {}, true);
    const signedAt = new Date(Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +dm[4]!, +dm[5]!, +dm[6]!));
    if (Math.abs(Date.now() - signedAt.getTime()) > MAX_SKEW_MS) {
      throw new AwsError(403, 'InvalidSignatureException', `Signature expired: ${amzDate} is now earlier or later than the allowed five minutes.`, {}, true);
    }
    if (scopeDate !== amzDate.slice(0, 8) || region !== this.region || scopeService !== service) {
      throw new AwsError(403, 'InvalidSignatureException', `Credential should be scoped to a valid region and service: expected ${this.region}/${service}, got ${region}/${scopeService}`, {}, true);
    }
    const names = signedHeaders.split(';');
    if (!names.includes('host') || !names.includes('x-amz-date')) throw new AwsError(403, 'InvalidSignatureException', 'host and x-amz-date must be signed', {}, true);
    const headers: Record<string, string> = {};
    for (const name of names) {
      const value = req.headers[name];
      if (value === undefined) throw new AwsError(403, 'InvalidSignatureException', `signed header ${name} is missing`, {}, true);
      headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    // A payload hash header is never taken on trust: it must be the hash of the body received.
    const claimed = headers['x-amz-content-sha256'];
    if (claimed !== undefined && claimed !== createHash('sha256').update(body).digest('hex')) {
      throw new AwsError(403, 'InvalidSignatureException', 'The provided x-amz-content-sha256 header does not match the computed hash of the body.', {}, true);
    }
    const [hostname = '', port] = (headers.host ?? '').split(':');
    const sessionToken = headers['x-amz-security-token'];
    const signer = new SignatureV4({
      credentials: { accessKeyId: keyId, secretAccessKey: secret, ...(sessionToken ? { sessionToken } : {}) },
      region: this.region,
      service,
      sha256: NodeSha256,
      uriEscapePath: true,
      applyChecksum: false,
    });
    const url = new URL(req.url ?? '/', 'http://placeholder');
    const signed = await signer.sign(
      new HttpRequest({ method: req.method ?? 'POST', protocol: 'http:', hostname, ...(port ? { port: Number(port) } : {}), path: url.pathname, headers, body: body.toString('utf8') }),
      { signingDate: signedAt },
    );
    const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization ?? ''))?.[1] ?? '';
    const expectedHeaders = /SignedHeaders=([^,]+)/.exec(String(signed.headers.authorization ?? ''))?.[1];
    if (expectedHeaders !== signedHeaders || expected.length !== 64 || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
      throw new AwsError(403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.', {}, true);
    }
  }

  // ---- shared rules ----

  private checkStore(body: Record<string, unknown>): void {
    const id = body.IdentityStoreId;
    if (typeof id !== 'string' || !/^(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.test(id)) {
      throw new AwsError(400, 'ValidationException', '1 validation error detected: Value at \'identityStoreId\' failed to satisfy constraint');
    }
    if (id !== this.identityStoreId) throw new AwsError(404, 'ResourceNotFoundException', `Identity store ${id} not found`, { ResourceType: 'IDENTITY_STORE', ResourceId: id });
  }

  private checkInstance(body: Record<string, unknown>): void {
    if (body.InstanceArn !== this.instanceArn) throw new AwsError(404, 'ResourceNotFoundException', `Instance ${String(body.InstanceArn)} not found`);
  }

  /** One page of `items`; NextToken is an opaque token bound to the listing it came from. */
  private page<T>(items: T[], body: Record<string, unknown>, listing: string): { items: T[]; NextToken?: string } {
    const max = body.MaxResults;
    if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 100)) {
      throw new AwsError(400, 'ValidationException', 'MaxResults must be between 1 and 100');
    }
    let offset = 0;
    if (body.NextToken !== undefined) {
      try {
        const decoded = JSON.parse(Buffer.from(typeof body.NextToken === 'string' ? body.NextToken : '', 'base64url').toString('utf8')) as { o?: unknown; l?: unknown };
        if (decoded.l !== listing || typeof decoded.o !== 'number') throw new Error('foreign token');
        offset = decoded.o;
      } catch {
        throw new AwsError(400, 'ValidationException', 'The NextToken is invalid');
      }
    }
    const size = Math.min(typeof max === 'number' ? max : 100, this.pageLimit);
    const slice = items.slice(offset, offset + size);
    const next = offset + size < items.length ? Buffer.from(JSON.stringify({ o: offset + size, l: listing })).toString('base64url') : undefined;
    return { items: slice, ...(next ? { NextToken: next } : {}) };
  }

  private user(id: unknown): FakeUser {
    const u = typeof id === 'string' ? this.users.get(id) : undefined;
    if (!u) throw new AwsError(404, 'ResourceNotFoundException', `User ${String(id)} not found`, { ResourceType: 'USER', ResourceId: id });
    return u;
  }

  private group(id: unknown): FakeGroup {
    const g = typeof id === 'string' ? this.groups.get(id) : undefined;
    if (!g) throw new AwsError(404, 'ResourceNotFoundException', `Group ${String(id)} not found`, { ResourceType: 'GROUP', ResourceId: id });
    return g;
  }

  private uniqueAttribute(body: Record<string, unknown>, path: string): string {
    const alt = body.AlternateIdentifier as { UniqueAttribute?: { AttributePath?: unknown; AttributeValue?: unknown } } | undefined;
    const ua = alt?.UniqueAttribute;
    if (!ua || ua.AttributePath !== path || typeof ua.AttributeValue !== 'string') {
      throw new AwsError(400, 'ValidationException', `AlternateIdentifier must be a UniqueAttribute on ${path}`);
    }
    return ua.AttributeValue;
  }

  private requireString(body: Record<string, unknown>, field: string, value: unknown, max = 1024): string {
    if (typeof value !== 'string' || value.length === 0 || value.length > max) throw new AwsError(400, 'ValidationException', `${field} is required (1 to ${max} characters)`);
    return value;
  }

  private userOut(u: FakeUser): Record<string, unknown> {
    return { IdentityStoreId: this.identityStoreId, ...u };
  }

  // ---- Identity Store ----

  private identityStore(op: string, b: Record<string, unknown>): unknown {
    this.checkStore(b);
    switch (op) {
      case 'CreateUser': {
        const userName = this.requireString(b, 'UserName', b.UserName, 128);
        if (['administrator', 'awsadministrators'].includes(userName.toLowerCase())) throw new AwsError(400, 'ValidationException', `UserName ${userName} is reserved`);
        const name = (b.Name ?? {}) as FakeUser['Name'];
        this.requireString(b, 'DisplayName', b.DisplayName);
        this.requireString(b, 'Name.GivenName', name.GivenName);
        this.requireString(b, 'Name.FamilyName', name.FamilyName);
        if (this.userByName(userName)) throw new AwsError(409, 'ConflictException', 'Duplicate UserName', { Reason: 'UNIQUENESS_CONSTRAINT_VIOLATION' });
        const emails = (b.Emails ?? []) as FakeUser['Emails'];
        if (!Array.isArray(emails) || emails.length > 1) throw new AwsError(400, 'ValidationException', 'Emails holds at most one address');
        const user: FakeUser = { UserId: this.newId(), UserName: userName, DisplayName: b.DisplayName as string, Name: name, Emails: emails, UserStatus: 'ENABLED' };
        this.users.set(user.UserId, user);
        return { IdentityStoreId: this.identityStoreId, UserId: user.UserId };
      }
      case 'GetUserId': {
        const u = this.userByName(this.uniqueAttribute(b, 'userName'));
        if (!u) throw new AwsError(404, 'ResourceNotFoundException', 'USER not found', { ResourceType: 'USER' });
        return { IdentityStoreId: this.identityStoreId, UserId: u.UserId };
      }
      case 'DescribeUser':
        return this.userOut(this.user(b.UserId));
      case 'ListUsers': {
        const { items, NextToken } = this.page([...this.users.values()], b, 'users');
        return { Users: items.map((u) => this.userOut(u)), ...(NextToken ? { NextToken } : {}) };
      }
      case 'UpdateUser': {
        const u = this.user(b.UserId);
        const ops = b.Operations as Array<{ AttributePath?: unknown; AttributeValue?: unknown }> | undefined;
        if (!Array.isArray(ops) || ops.length < 1 || ops.length > 100) throw new AwsError(400, 'ValidationException', 'Operations must hold 1 to 100 operations');
        const next: FakeUser = { ...u, Name: { ...u.Name }, Emails: [...u.Emails] };
        for (const o of ops) {
          switch (o.AttributePath) {
            case 'userName': {
              const v = this.requireString(b, 'userName', o.AttributeValue, 128);
              const other = this.userByName(v);
              if (other && other.UserId !== u.UserId) throw new AwsError(409, 'ConflictException', 'Duplicate UserName', { Reason: 'UNIQUENESS_CONSTRAINT_VIOLATION' });
              next.UserName = v;
              break;
            }
            case 'displayName':
              next.DisplayName = this.requireString(b, 'displayName', o.AttributeValue);
              break;
            case 'name.givenName':
              next.Name.GivenName = this.requireString(b, 'name.givenName', o.AttributeValue);
              break;
            case 'name.familyName':
              next.Name.FamilyName = this.requireString(b, 'name.familyName', o.AttributeValue);
              break;
            case 'emails':
              if (!Array.isArray(o.AttributeValue) || o.AttributeValue.length > 1) throw new AwsError(400, 'ValidationException', 'emails holds at most one address');
              next.Emails = o.AttributeValue as FakeUser['Emails'];
              break;
            default:
              throw new AwsError(400, 'ValidationException', `Unsupported AttributePath ${String(o.AttributePath)}`);
          }
        }
        this.users.set(u.UserId, next);
        return {};
      }
      case 'DeleteUser': {
        const u = this.user(b.UserId);
        this.users.delete(u.UserId);
        for (const [id, m] of this.memberships) if (m.UserId === u.UserId) this.memberships.delete(id);
        return {};
      }
      case 'CreateGroup': {
        const displayName = this.requireString(b, 'DisplayName', b.DisplayName);
        if (this.groupByName(displayName)) throw new AwsError(409, 'ConflictException', 'Duplicate GroupDisplayName', { Reason: 'UNIQUENESS_CONSTRAINT_VIOLATION' });
        const g: FakeGroup = { GroupId: this.newId(), DisplayName: displayName, ...(typeof b.Description === 'string' ? { Description: b.Description } : {}) };
        this.groups.set(g.GroupId, g);
        return { IdentityStoreId: this.identityStoreId, GroupId: g.GroupId };
      }
      case 'GetGroupId': {
        const g = this.groupByName(this.uniqueAttribute(b, 'displayName'));
        if (!g) throw new AwsError(404, 'ResourceNotFoundException', 'GROUP not found', { ResourceType: 'GROUP' });
        return { IdentityStoreId: this.identityStoreId, GroupId: g.GroupId };
      }
      case 'CreateGroupMembership': {
        const g = this.group(b.GroupId);
        const u = this.user((b.MemberId as { UserId?: unknown } | undefined)?.UserId);
        if ([...this.memberships.values()].some((m) => m.GroupId === g.GroupId && m.UserId === u.UserId)) {
          throw new AwsError(409, 'ConflictException', 'Member is already in the group', { Reason: 'UNIQUENESS_CONSTRAINT_VIOLATION' });
        }
        return { IdentityStoreId: this.identityStoreId, MembershipId: this.addMember(g.GroupId, u.UserId).MembershipId };
      }
      case 'GetGroupMembershipId': {
        const g = this.group(b.GroupId);
        const userId = (b.MemberId as { UserId?: unknown } | undefined)?.UserId;
        const m = [...this.memberships.values()].find((x) => x.GroupId === g.GroupId && x.UserId === userId);
        if (!m) throw new AwsError(404, 'ResourceNotFoundException', 'GROUP_MEMBERSHIP not found', { ResourceType: 'GROUP_MEMBERSHIP' });
        return { IdentityStoreId: this.identityStoreId, MembershipId: m.MembershipId };
      }
      case 'DeleteGroupMembership': {
        const id = b.MembershipId;
        if (typeof id !== 'string' || !this.memberships.has(id)) throw new AwsError(404, 'ResourceNotFoundException', `Membership ${String(id)} not found`, { ResourceType: 'GROUP_MEMBERSHIP' });
        this.memberships.delete(id);
        return {};
      }
      case 'ListGroupMemberships': {
        const g = this.group(b.GroupId);
        const all = [...this.memberships.values()].filter((m) => m.GroupId === g.GroupId);
        const { items, NextToken } = this.page(all, b, `members:${g.GroupId}`);
        return {
          GroupMemberships: items.map((m) => ({ IdentityStoreId: this.identityStoreId, MembershipId: m.MembershipId, GroupId: m.GroupId, MemberId: { UserId: m.UserId } })),
          ...(NextToken ? { NextToken } : {}),
        };
      }
      default:
        throw new AwsError(400, 'UnknownOperationException', `Identity Store operation ${op} is not implemented by the fake`);
    }
  }

  // ---- SSO Admin ----

  private tick(): void {
    for (const p of [...this.pending]) {
      if (--p.remaining > 0) continue;
      this.pending.splice(this.pending.indexOf(p), 1);
      this.finish(p.kind, p.assignment);
    }
  }

  private finish(kind: 'create' | 'delete', a: FakeAssignment): void {
    const i = this.assignments.findIndex((x) => x.AccountId === a.AccountId && x.PermissionSetArn === a.PermissionSetArn && x.PrincipalId === a.PrincipalId && x.PrincipalType === a.PrincipalType);
    if (kind === 'create' && i < 0) this.assignments.push(a);
    if (kind === 'delete' && i >= 0) this.assignments.splice(i, 1);
  }

  private assignmentRequest(kind: 'create' | 'delete', b: Record<string, unknown>): Record<string, unknown> {
    const a = this.assignmentInput(b);
    if (this.pending.some((p) => p.assignment.AccountId === a.AccountId && p.assignment.PermissionSetArn === a.PermissionSetArn && p.assignment.PrincipalId === a.PrincipalId)) {
      throw new AwsError(409, 'ConflictException', 'An operation on this account assignment is already in progress. Retry later.');
    }
    const requestId = randomUUID();
    const status = { RequestId: requestId, TargetId: a.AccountId, TargetType: 'AWS_ACCOUNT', PermissionSetArn: a.PermissionSetArn, PrincipalType: a.PrincipalType, PrincipalId: a.PrincipalId, CreatedDate: Date.now() / 1000 };
    if (this.assignmentFailure) return { ...status, Status: 'FAILED', FailureReason: this.assignmentFailure };
    if (this.assignmentLatency > 0) {
      this.pending.push({ requestId, kind, assignment: a, remaining: this.assignmentLatency });
      return { ...status, Status: 'IN_PROGRESS' };
    }
    this.finish(kind, a);
    return { ...status, Status: 'SUCCEEDED' };
  }

  private assignmentInput(b: Record<string, unknown>): FakeAssignment {
    this.checkInstance(b);
    if (b.TargetType !== 'AWS_ACCOUNT' || typeof b.TargetId !== 'string' || !/^\d{12}$/.test(b.TargetId)) throw new AwsError(400, 'ValidationException', 'TargetId must be a 12-digit account id with TargetType AWS_ACCOUNT');
    if (b.PrincipalType !== 'USER' && b.PrincipalType !== 'GROUP') throw new AwsError(400, 'ValidationException', 'PrincipalType must be USER or GROUP');
    if (typeof b.PermissionSetArn !== 'string' || !this.permissionSets.has(b.PermissionSetArn)) throw new AwsError(404, 'ResourceNotFoundException', `Permission set ${String(b.PermissionSetArn)} not found`);
    if (b.PrincipalType === 'USER') this.user(b.PrincipalId);
    return { AccountId: b.TargetId, PermissionSetArn: b.PermissionSetArn, PrincipalType: b.PrincipalType, PrincipalId: String(b.PrincipalId) };
  }

  private ssoAdmin(op: string, b: Record<string, unknown>): unknown {
    this.tick();
    switch (op) {
      case 'DescribeInstance':
        this.checkInstance(b);
        return { InstanceArn: this.instanceArn, IdentityStoreId: this.identityStoreId, Status: 'ACTIVE', Name: 'fake' };
      case 'CreateAccountAssignment':
        return { AccountAssignmentCreationStatus: this.assignmentRequest('create', b) };
      case 'DeleteAccountAssignment':
        return { AccountAssignmentDeletionStatus: this.assignmentRequest('delete', b) };
      case 'ListAccountAssignmentsForPrincipal': {
        this.checkInstance(b);
        if (b.PrincipalType === 'USER') this.user(b.PrincipalId);
        const accountId = (b.Filter as { AccountId?: unknown } | undefined)?.AccountId;
        const all = this.assignments.filter((a) => a.PrincipalId === b.PrincipalId && a.PrincipalType === b.PrincipalType && (accountId === undefined || a.AccountId === accountId));
        const { items, NextToken } = this.page(all, b, `principal:${String(b.PrincipalId)}:${String(accountId)}`);
        return { AccountAssignments: items, ...(NextToken ? { NextToken } : {}) };
      }
      case 'ListAccountAssignments': {
        this.checkInstance(b);
        const all = this.assignments.filter((a) => a.AccountId === b.AccountId && a.PermissionSetArn === b.PermissionSetArn);
        const { items, NextToken } = this.page(all, b, `assignments:${String(b.AccountId)}:${String(b.PermissionSetArn)}`);
        return { AccountAssignments: items, ...(NextToken ? { NextToken } : {}) };
      }
      default:
        throw new AwsError(400, 'UnknownOperationException', `SSO Admin operation ${op} is not implemented by the fake`);
    }
  }
}

export async function startFakeAws(opts: FakeAwsOptions = {}): Promise<FakeAws> {
  return await new FakeAws(opts).start();
}
