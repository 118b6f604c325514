/**
 * Checks of connector configuration that a JSON schema cannot express, shared by the connectors so
 * each refuses the same mistakes with the same words: the problem, the field, and the connector.
 */
import { PermanentError } from './contract.js';

/** "invalid configuration for connector "<type>": <field>: <problem>", kind invalidConfig. */
export function configError(type: string, field: string, problem: string): PermanentError {
  return new PermanentError(`invalid configuration for connector "${type}": ${field}: ${problem}`, 'invalidConfig');
}

/** localhost (and *.localhost), 127.0.0.0/8 and ::1, with or without IPv6 brackets. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * Checks an endpoint URL: parseable, https (plain http only on loopback, so credentials never
 * cross a network in clear), no user or password in it, and no query or fragment. Answers the URL
 * without a trailing slash, ready to have paths appended.
 */
export function checkEndpointUrl(type: string, field: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw configError(type, field, 'is not a valid URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw configError(type, field, 'must be an https URL (plain http only for localhost, so credentials never cross a network in clear)');
  }
  if (url.username || url.password) throw configError(type, field, 'must not contain credentials; give them by reference in their own fields');
  if (url.search || url.hash) throw configError(type, field, 'must not contain a query or fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}
