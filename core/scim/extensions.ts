/**
 * Custom SCIM extension schemas declared in configuration (SCIM_EXTENSIONS_FILE), e.g. a
 * `githubUsername` attribute on Users. The file is a JSON array of
 * `{ id, name?, description?, resourceType: "User" | "Group", required?, attributes: [...] }` where
 * each attribute lists its RFC 7643 §7 characteristics (defaults as in RFC 7643 §2.2).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { SchemaRegistry, type CustomExtensionConfig } from './schemas.js';

export function loadSchemaRegistry(file: string | undefined): SchemaRegistry {
  if (!file) return new SchemaRegistry();
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError('SCIM_EXTENSIONS_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new ConfigError('SCIM_EXTENSIONS_FILE', 'must contain a JSON array of schemas');
  try {
    return new SchemaRegistry(parsed as CustomExtensionConfig[]);
  } catch (err) {
    throw new ConfigError('SCIM_EXTENSIONS_FILE', (err as Error).message);
  }
}
