/** Every workflow the worker registers. The worker bundles this file into the workflow sandbox. */
export { userSync } from './user-sync.js';
export { reconcile } from './reconcile.js';
export { testConnection } from './test-connection.js';
export { accessRequest } from './access-request.js';
export { sourceImport } from './source-import.js';
export { certification } from './certification.js';
