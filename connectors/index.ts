/**
 * The built-in connectors, registered by type name. Plugins outside this folder need no entry here:
 * configure their npm package name or file path as the connector type.
 */
import { registerBuiltIn } from '@scim-gateway/connector-sdk/registry';

registerBuiltIn('webhook', () => import('./webhook/index.js'));
registerBuiltIn('scim', () => import('./scim/index.js'));
registerBuiltIn('github', () => import('./github/index.js'));
registerBuiltIn('auth0', () => import('./auth0/index.js'));
registerBuiltIn('openvpn', () => import('./openvpn/index.js'));
registerBuiltIn('google-groups', () => import('./google-groups/index.js'));
registerBuiltIn('aws-identity-center', () => import('./aws-identity-center/index.js'));

export { loadConnector, instantiate, validateConfig, builtInTypes } from '@scim-gateway/connector-sdk/registry';
export * from '@scim-gateway/connector-sdk';
