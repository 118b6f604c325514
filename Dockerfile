# One image for both processes of the production stack: the gateway (the default command) and the
# Temporal worker (`node dist/workflows/worker.js`). The TypeScript sources are compiled and the
# workflow code bundled at build time (npm run build:dist); the final stage holds the compiled
# JavaScript and the production dependencies only, and runs as the unprivileged `node` user.

FROM node:24.22.3-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# The workspace packages' manifests, so npm ci can link them (node_modules/@scim-gateway/*).
COPY packages/connector-sdk/package.json ./packages/connector-sdk/
RUN npm ci
COPY . .
RUN npm run build:dist && npm prune --omit=dev

FROM node:24.22.3-bookworm-slim
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The connector SDK, compiled, which node_modules/@scim-gateway/connector-sdk links to.
COPY --from=build /src/packages/connector-sdk/package.json ./packages/connector-sdk/
COPY --from=build /src/packages/connector-sdk/dist ./packages/connector-sdk/dist
COPY package.json ./
# Everything stays owned by root: the unprivileged user can read the code but not change it.
USER node
EXPOSE 8080
CMD ["node", "dist/gateway/server.js"]
