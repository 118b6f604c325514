/**
 * Request URLs as they may appear in logs. Credentials sent in a URL are refused (only the
 * Authorization header authenticates), but the URL would still be logged as sent; so the value of
 * any query parameter whose name looks like a credential, and the token of a download link, are
 * replaced before a URL reaches a log line.
 */
import { redactDownloadPath } from './delivery/index.js';

/** Query parameter names whose values are never logged (compared case-insensitively). */
const CREDENTIAL_NAME = /token|secret|passw|pwd|api[-_]?key|^key$|^sig$|signature|credential|^auth$|authorization|^code$|session/i;

export const REDACTED = '[redacted]';

function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/** `url` (path and query) with credential-like query values and download tokens replaced. */
export function redactUrl(url: string): string {
  const path = redactDownloadPath(url);
  const q = path.indexOf('?');
  if (q === -1) return path;
  const hash = path.indexOf('#', q);
  const query = path.slice(q + 1, hash === -1 ? undefined : hash);
  const redacted = query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      return eq !== -1 && CREDENTIAL_NAME.test(decodedName(name)) ? `${name}=${REDACTED}` : pair;
    })
    .join('&');
  return `${path.slice(0, q)}?${redacted}`;
}

/** The path of `url` without its query string, for messages that echo what was asked for. */
export function pathOnly(url: string): string {
  return redactDownloadPath(url.split(/[?#]/, 1)[0] ?? '');
}
