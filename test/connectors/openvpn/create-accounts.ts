/**
 * A second worker process for the concurrency test: creates the accounts named on the command line,
 * all at once, on the PKI given by the JSON configuration in argv[2], and prints the results as JSON.
 */
import openvpnConnector from '../../../connectors/openvpn/index.js';
import { sampleUser } from '@scim-gateway/connector-sdk/kit';
import { createSecretResolver } from '@scim-gateway/connector-sdk';

const [, , configJson, ...names] = process.argv;
const instance = openvpnConnector.create({
  config: JSON.parse(configJson!),
  secret: createSecretResolver(),
  log: { info: () => {}, warn: () => {} },
  deliver: async (artifact) => ({ url: `https://gateway.test/d/${artifact.filename}`, expiresAt: new Date(Date.now() + 60_000).toISOString() }),
});
const results = await Promise.allSettled(names.map((n) => instance.createAccount!({ ...sampleUser(n), userName: n })));
process.stdout.write(JSON.stringify(results.map((r) => (r.status === 'fulfilled' ? r.value : { error: String(r.reason) }))));
