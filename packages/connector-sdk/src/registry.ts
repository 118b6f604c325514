/**
 * Finds connector definitions by type: the built-in ones by name, and plugins by npm package name or
 * file path, so adding a connector never changes gateway/ or workflows/. A plugin module's default
 * export (or its `connector` export) is a {@link ConnectorDefinition}.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, type ConnectorContext, type ConnectorDefinition, type ConnectorInstance, type ConnectorLogger } from './contract.js';
import { createSecretResolver } from './secrets.js';

/** Built-in connectors, loaded on first use. */
const BUILT_IN: Record<string, () => Promise<unknown>> = {};

/** Registers a built-in connector module loader (the gateway's connectors/index.ts calls this for each). */
export function registerBuiltIn(type: string, load: () => Promise<unknown>): void {
  BUILT_IN[type] = load;
}

/** The registered built-in type names, sorted. */
export function builtInTypes(): string[] {
  return Object.keys(BUILT_IN).sort();
}

function isDefinition(x: unknown): x is ConnectorDefinition {
  const d = x as Partial<ConnectorDefinition> | undefined;
  return !!d && typeof d.type === 'string' && typeof d.create === 'function' && Array.isArray(d.capabilities) && !!d.configSchema;
}

const cache = new Map<string, Promise<ConnectorDefinition>>();

/**
 * Loads a connector definition. `type` is a built-in name ("webhook"), a path ("./plugins/x.js",
 * "/opt/x/index.js"), or an npm package name ("@acme/scim-gateway-connector-foo").
 */
export async function loadConnector(type: string, baseDir = process.cwd()): Promise<ConnectorDefinition> {
  let pending = cache.get(type);
  if (!pending) {
    pending = (async () => {
      let mod: unknown;
      const builtIn = BUILT_IN[type];
      try {
        if (builtIn) mod = await builtIn();
        else if (type.startsWith('.') || isAbsolute(type)) mod = await import(pathToFileURL(resolve(baseDir, type)).href);
        else mod = await import(type);
      } catch (err) {
        throw new PermanentError(`connector type "${type}" cannot be loaded: ${(err as Error).message}`, 'unknownConnector', { cause: err });
      }
      const m = mod as { default?: unknown; connector?: unknown };
      const def = isDefinition(m.default) ? m.default : isDefinition(m.connector) ? m.connector : undefined;
      if (!def) throw new PermanentError(`module for connector type "${type}" exports no connector definition`, 'unknownConnector');
      return def;
    })();
    cache.set(type, pending);
    pending.catch(() => cache.delete(type));
  }
  return await pending;
}

/**
 * Checks configuration against the connector's schema, after filling in the schema's `default`s;
 * answers the configuration as the connector will see it (a copy, the input is left as it was).
 * The error message lists every problem.
 */
export function validateConfig(def: ConnectorDefinition, config: unknown): unknown {
  const filled = Value.Default(def.configSchema, Value.Clone(config));
  if (Value.Check(def.configSchema, filled)) return filled;
  const problems = [...Value.Errors(def.configSchema, filled)].slice(0, 10).map((e) => `${e.path || '/'}: ${e.message}`);
  throw new PermanentError(`invalid configuration for connector "${def.type}": ${problems.join('; ')}`, 'invalidConfig');
}

const quietLog: ConnectorLogger = { info: () => {}, warn: () => {} };

/**
 * Validates configuration and creates an instance with the standard secret resolver. `deliver` is
 * passed on as given: absent means the process cannot deliver artifacts to users.
 */
export function instantiate(def: ConnectorDefinition, config: unknown, opts: Partial<Omit<ConnectorContext<unknown>, 'config'>> = {}): ConnectorInstance {
  const filled = validateConfig(def, config);
  return def.create({ config: filled, secret: opts.secret ?? createSecretResolver(), log: opts.log ?? quietLog, ...(opts.deliver ? { deliver: opts.deliver } : {}) });
}
