# One image for both processes of the production stack: the gateway (`npm run gateway`, the
# default) and the Temporal worker (`npm run worker`). tsx runs the TypeScript sources directly and
# is a runtime dependency, so dev dependencies are left out.
FROM node:20-bookworm-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so a source-only change reuses this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY . .

# The sources stay owned by root: the unprivileged user can read them but not change them.
USER node

EXPOSE 8080
CMD ["npm", "run", "gateway"]
