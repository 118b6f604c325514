/**
 * Secret references. Connector configuration never holds a secret itself, only where to find it:
 * `env:NAME` (an environment variable of the worker) or `file:/path` (e.g. a mounted Kubernetes or
 * Docker secret). The database therefore never stores a secret in plaintext, and the API can show
 * configuration freely.
 */
import { readFile } from 'node:fs/promises';
import { PermanentError, type SecretResolver } from './contract.js';

/**
 * The shape of a secret reference as a JSON-schema `pattern`, for configuration schemas:
 * `Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: '…' })` refuses a pasted secret
 * before anything runs.
 */
export const SECRET_REFERENCE_PATTERN = '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$';

const REFERENCE = new RegExp(SECRET_REFERENCE_PATTERN);

/** True when `value` is a secret reference rather than a secret. */
export function isSecretReference(value: unknown): value is string {
  return typeof value === 'string' && REFERENCE.test(value);
}

export function createSecretResolver(env: Record<string, string | undefined> = process.env): SecretResolver {
  return async (reference: string) => {
    if (!isSecretReference(reference)) {
      throw new PermanentError('a secret must be given by reference, env:NAME or file:/path, never as a value', 'invalidConfig');
    }
    if (reference.startsWith('env:')) {
      const name = reference.slice(4);
      const value = env[name];
      if (value === undefined || value === '') throw new PermanentError(`secret ${reference} is not set in the worker's environment`, 'invalidConfig');
      return value;
    }
    const path = reference.slice(5);
    try {
      return (await readFile(path, 'utf8')).trim();
    } catch (err) {
      throw new PermanentError(`secret ${reference} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'invalidConfig', { cause: err });
    }
  };
}
