/**
 * What every console page is built with: the page frame and its navigation, error cards, the
 * signed-in person (and the administrators' check), CSRF-checked forms, and the hooks that give every
 * console route its Content-Security-Policy, its form parser and its error page. Page groups
 * (index.ts, admin pages, …) each take one {@link ConsoleKit} and register their routes with it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { html, SafeHtml } from './html.js';
import { OidcSignIn } from './oidc.js';
import { Cookies, randomToken, safeReturnPath, sameSecret, SessionStore, type ConsoleSession } from './session.js';

export interface ConsoleOptions {
  /** Offer sign-in as any directory user (`npm start` on its embedded database only); ignored when an IdP is configured. */
  localSignIn: boolean;
}

export type Form = Record<string, string>;

/** Every console page: scripts from nowhere, styles only with this answer's nonce, forms only to the gateway itself. */
export const CONSOLE_HELMET = {
  enableCSPNonces: true,
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'none'"],
      scriptSrc: ["'none'"],
      styleSrc: [] as string[],
      imgSrc: ["'self'"],
      formAction: ["'self'"],
      baseUri: ["'none'"],
      frameAncestors: ["'none'"],
    },
  },
};

/**
 * A page that updates live (a user's provisioning status): as {@link CONSOLE_HELMET}, but scripts
 * with this answer's nonce (the gateway's own live-status script) and fetches (its event stream) to
 * the gateway itself. A route opts in with its option `helmet: CONSOLE_LIVE_HELMET`.
 */
export const CONSOLE_LIVE_HELMET = {
  ...CONSOLE_HELMET,
  contentSecurityPolicy: {
    ...CONSOLE_HELMET.contentSecurityPolicy,
    directives: { ...CONSOLE_HELMET.contentSecurityPolicy.directives, scriptSrc: [] as string[], connectSrc: ["'self'"] },
  },
};

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const STYLE = `
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #1a1a1a; background: #fafafa; }
body { margin: 0; }
header { background: #1f3a5f; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; }
header a { color: #fff; }
header nav ul { list-style: none; display: flex; gap: 1rem; margin: 0; padding: 0; }
header form { margin-left: auto; }
main { padding: 1.2rem; max-width: 60rem; }
.card { background: #fff; border: 1px solid #c8c8c8; border-radius: 6px; padding: .8rem 1rem; margin-bottom: 1rem; }
.local { background: #fff3cd; border-color: #8a6d00; }
.error { background: #fdecea; border-color: #a4262c; }
.ok { background: #e6f4ea; border-color: #1e6b34; }
label { display: block; margin-top: .5rem; font-weight: 600; }
input, textarea, select, button { font: inherit; }
textarea { width: 100%; max-width: 40rem; }
button { margin-top: .6rem; padding: .3rem .9rem; border: 1px solid #1f3a5f; background: #1f3a5f; color: #fff; border-radius: 4px; cursor: pointer; }
button.secondary { background: #fff; color: #1f3a5f; }
button:focus-visible, a:focus-visible, input:focus-visible, textarea:focus-visible, select:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
.status { font-weight: 700; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
table { border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: .2rem .6rem .2rem 0; border-bottom: 1px solid #e0e0e0; }
td form { display: inline; }
fieldset { margin-top: .6rem; border: 1px solid #c8c8c8; }
label.inline { display: inline; font-weight: 400; }
`;

export const STATUS_TEXT: Record<string, string> = {
  pending: 'waiting for approval',
  approved: 'approved, being granted',
  invited: 'invited, waiting for the first sign-in',
  rejected: 'rejected',
  cancelled: 'cancelled',
  expired: 'expired',
  fulfilled: 'granted',
  failed: 'failed',
  revoked: 'revoked',
};

export function hours(seconds: number | null): string {
  if (seconds === null) return 'no end';
  return seconds % 3600 === 0 ? `${seconds / 3600} h` : `${Math.round(seconds / 60)} min`;
}

/** How many items a list page shows. */
export const PAGE_SIZE = 50;

/** The page of a list asked for in `?page=` (from 1); anything else is the first page. */
export function pageNumber(raw: unknown): number {
  return typeof raw === 'string' && /^[1-9]\d{0,5}$/.test(raw) ? Number(raw) : 1;
}

/**
 * Reads one page of a list: `fetch` is asked for one item more than a page (after skipping the
 * pages before), so whether there is a next page is known without counting.
 */
export async function onePage<T>(pageNo: number, fetch: (limit: number, offset: number) => Promise<T[]>): Promise<{ items: T[]; hasNext: boolean }> {
  const rows = await fetch(PAGE_SIZE + 1, (pageNo - 1) * PAGE_SIZE);
  return { items: rows.slice(0, PAGE_SIZE), hasNext: rows.length > PAGE_SIZE };
}

/** Previous and next links of a list page at `path` (nothing when everything fits on the first page). */
export function pager(path: string, pageNo: number, hasNext: boolean): SafeHtml {
  if (pageNo === 1 && !hasNext) return html``;
  return html`<nav aria-label="Pages" class="pager"><p>Page ${pageNo}${pageNo > 1 ? html` · <a href="${path}?page=${pageNo - 1}" rel="prev">Previous page</a>` : ''}${
    hasNext ? html` · <a href="${path}?page=${pageNo + 1}" rel="next">Next page</a>` : ''
  }</p></nav>`;
}

/** What an empty list page says: `empty` on the first page, a way back to it on a later one. */
export function emptyList(path: string, pageNo: number, empty: SafeHtml): SafeHtml {
  return pageNo === 1 ? html`<div class="card">${empty}</div>` : html`<div class="card"><p>There is nothing on page ${pageNo}. <a href="${path}">Go to the first page</a>.</p></div>`;
}

/**
 * The duration (whole hours; empty for the policy's default) and justification of a request form,
 * as createRequest takes them; or what is wrong with them.
 */
export function requestFields(form: Form): { error: string } | { durationSeconds?: number; justification?: string } {
  const rawHours = (form.hours ?? '').trim();
  if (rawHours !== '' && !/^\d{1,6}$/.test(rawHours)) return { error: 'The duration must be a whole number of hours.' };
  const justification = (form.justification ?? '').trim();
  return {
    ...(justification ? { justification: justification.slice(0, 4000) } : {}),
    ...(rawHours !== '' && Number(rawHours) > 0 ? { durationSeconds: Number(rawHours) * 3600 } : {}),
  };
}

/** The main navigation: everyone's pages, then the administrators' (shown to administrators only). */
const NAV: Array<{ href: string; label: string }> = [
  { href: '/console/catalogue', label: 'Request access' },
  { href: '/console/requests', label: 'My requests' },
  { href: '/console/access', label: 'My access' },
  { href: '/console/inbox', label: 'Approvals' },
  { href: '/console/tasks', label: 'Tasks' },
  { href: '/console/reviews', label: 'Reviews' },
];
const ADMIN_NAV: Array<{ href: string; label: string }> = [
  { href: '/console/admin/users', label: 'Users' },
  { href: '/console/admin/access', label: 'Who has what' },
  { href: '/console/admin/audit', label: 'Audit log' },
  { href: '/console/admin/connectors', label: 'Connectors' },
  { href: '/console/admin/tokens', label: 'API tokens' },
];

/** The console's building blocks, bound to one Fastify instance (the console's plugin scope). */
export interface ConsoleKit {
  oidc: OidcSignIn | undefined;
  localSignIn: boolean;
  cookies: Cookies;
  sessions: SessionStore;
  /** Answers a whole HTML page (frame, navigation for `me`, the title as its heading). */
  page: (reply: FastifyReply, me: ConsoleSession | undefined, title: string, body: SafeHtml) => FastifyReply;
  /** A card saying what went wrong, and where to go next (the console's start by default). */
  errorCard: (message: string, next?: SafeHtml) => SafeHtml;
  /** The signed-in person; otherwise a redirect to sign-in (GET) or 403 (anything else) has been answered. */
  signedIn: (request: FastifyRequest, reply: FastifyReply) => Promise<ConsoleSession | undefined>;
  /** The signed-in administrator; otherwise sign-in or a 403 page has been answered. */
  admin: (request: FastifyRequest, reply: FastifyReply) => Promise<ConsoleSession | undefined>;
  /** A state-changing form by the signed-in person with the session's CSRF token; 403 otherwise. */
  acting: (request: FastifyRequest, reply: FastifyReply) => Promise<{ me: ConsoleSession; form: Form } | undefined>;
  /** {@link acting}, by an administrator. */
  adminActing: (request: FastifyRequest, reply: FastifyReply) => Promise<{ me: ConsoleSession; form: Form } | undefined>;
  /** userName by user id. */
  userNames: (ids: string[]) => Promise<Map<string, string>>;
  /** The gateway's public base URL (PUBLIC_URL, else the address the browser used). */
  redirectBase: (request: FastifyRequest) => string;
}

/** Installs the console's hooks on `app` and answers the kit its pages are built with. */
export function consoleKit(app: FastifyInstance, opts: ConsoleOptions): ConsoleKit {
  const settings = app.config.console;
  const oidc = settings.oidc ? new OidcSignIn(settings.oidc, settings.userClaim) : undefined;
  const localSignIn = opts.localSignIn && !oidc;
  // Without a configured secret (local sign-in only) the cookies are signed with a key of this process.
  const cookies = new Cookies(settings.sessionSecret ?? randomToken(32));
  const sessions = new SessionStore(app.db, cookies, settings.sessionTtlSeconds, localSignIn, settings.adminGroup);

  app.addHook('onRoute', (route: RouteOptions) => {
    const own = (route.config as { helmet?: unknown } | undefined)?.helmet;
    route.config = { ...(route.config as object), helmet: own === CONSOLE_LIVE_HELMET ? own : CONSOLE_HELMET } as RouteOptions['config'];
    // HTML pages for people, not part of the API's OpenAPI document.
    route.schema = { ...route.schema, hide: true };
  });
  // Plain HTML forms; the first value of each field.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    const form: Form = {};
    for (const [k, v] of new URLSearchParams(body as string)) if (!(k in form)) form[k] = v;
    done(null, form);
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) request.log.error({ err }, 'console page failed');
    return page(reply.code(status), undefined, 'Something went wrong', errorCard(status === 500 ? 'The page could not be shown. Try again; if it keeps failing, tell your administrator.' : err.message));
  });

  function page(reply: FastifyReply, me: ConsoleSession | undefined, title: string, body: SafeHtml): FastifyReply {
    const nonce = (reply as FastifyReply & { cspNonce?: { style: string } }).cspNonce?.style ?? '';
    const doc = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · SCIM gateway console</title><style nonce="${nonce}">${new SafeHtml(STYLE)}</style></head>
<body><header><strong>SCIM gateway console</strong>
${me
  ? html`<nav aria-label="Main"><ul>${[...NAV, ...(me.admin ? ADMIN_NAV : [])].map((n) => html`<li><a href="${n.href}">${n.label}</a></li>`)}</ul></nav>
<form method="post" action="/console/logout"><input type="hidden" name="_csrf" value="${me.csrf}"><span>${me.displayName ?? me.userName}${me.via === 'local' ? ' (local sign-in)' : ''}</span> <button type="submit" class="secondary">Sign out</button></form>`
  : ''}
</header><main id="main"><h1>${title}</h1>${body}</main></body></html>`;
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(doc.value);
  }

  function errorCard(message: string, next?: SafeHtml): SafeHtml {
    return html`<div class="card error" role="alert"><p>${message}</p>${next ?? html`<p><a href="/console">Back to the console</a></p>`}</div>`;
  }

  /** The signed-in person; otherwise a redirect to sign-in (GET) or 403 (anything else) has been answered. */
  async function signedIn(request: FastifyRequest, reply: FastifyReply): Promise<ConsoleSession | undefined> {
    const me = await sessions.get(request);
    if (me) return me;
    if (request.method === 'GET') reply.redirect(`/console?returnTo=${encodeURIComponent(safeReturnPath(request.url))}`, 303);
    else page(reply.code(403), undefined, 'Signed out', errorCard('You are not signed in (or your session ended). Sign in and try again.'));
    return undefined;
  }

  /** A state-changing form by the signed-in person with the session's CSRF token; 403 otherwise. */
  async function acting(request: FastifyRequest, reply: FastifyReply): Promise<{ me: ConsoleSession; form: Form } | undefined> {
    const me = await signedIn(request, reply);
    if (!me) return undefined;
    const form = (request.body && typeof request.body === 'object' ? request.body : {}) as Form;
    if (!sameSecret(form._csrf, me.csrf)) {
      page(reply.code(403), me, 'Refused', errorCard('This form is missing its security token or it has expired. Reload the page and try again.'));
      return undefined;
    }
    return { me, form };
  }

  async function userNames(ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const { rows } = await app.db.query<{ id: string; user_name: string }>('SELECT id, user_name FROM users WHERE id = ANY ($1::uuid[])', [ids]);
    return new Map(rows.map((r) => [r.id, r.user_name]));
  }

  function redirectBase(request: FastifyRequest): string {
    return (app.config.publicUrl ?? `${request.protocol}://${request.host}`).replace(/\/$/, '');
  }

  async function admin(request: FastifyRequest, reply: FastifyReply): Promise<ConsoleSession | undefined> {
    const me = await signedIn(request, reply);
    if (!me || me.admin) return me;
    page(reply.code(403), me, 'Administrators only', errorCard('This page is for the gateway’s administrators (members of the group CONSOLE_ADMIN_GROUP names).'));
    return undefined;
  }

  async function adminActing(request: FastifyRequest, reply: FastifyReply): Promise<{ me: ConsoleSession; form: Form } | undefined> {
    const acted = await acting(request, reply);
    if (!acted || acted.me.admin) return acted;
    page(reply.code(403), acted.me, 'Administrators only', errorCard('Only the gateway’s administrators may do this.'));
    return undefined;
  }

  return { oidc, localSignIn, cookies, sessions, page, errorCard, signedIn, admin, acting, adminActing, userNames, redirectBase };
}
