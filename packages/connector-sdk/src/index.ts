/**
 * The connector SDK: everything a connector plugin imports, by package name, the same way the
 * gateway's built-in connectors do.
 *
 *   import { defineConnector, PermanentError, checkEndpointUrl } from '@scim-gateway/connector-sdk';
 *   import { runContractKit } from '@scim-gateway/connector-sdk/kit';          // in tests
 *   import { loadConnector, instantiate } from '@scim-gateway/connector-sdk/registry'; // hosts
 */
export * from './contract.js';
export * from './config-checks.js';
export * from './secrets.js';
