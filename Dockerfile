# causeway: one image for `causeway agent`, `causeway relay` and `causeway signaling`.
# It carries the one build (`npm run build`: the CLI bundle dist/cli and the debug page
# dist/page), the production npm dependencies and bin/causeway: no TypeScript sources. Node comes
# from the base image (the `node` npm dependency is dropped from the image). Runs as the
# non-root user 10001 with a read-only root filesystem (nothing is written outside /tmp).
# scripts/image/build.sh builds the same image without Docker (buildah, from scratch) and
# test/image/image.test.ts runs it.

# 1. Build: `npm ci` with the dev dependencies (esbuild), then `npm run build`.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts
COPY protocol ./protocol
COPY agent ./agent
COPY peer ./peer
COPY cli ./cli
COPY relay ./relay
COPY signaling ./signaling
COPY scripts ./scripts
RUN node scripts/build.ts

# 2. Production dependencies only.
FROM node:22-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts \
 && rm -rf node_modules/node node_modules/node-linux-* node_modules/.bin/node \
 && npm cache clean --force

# 3. Runtime.
FROM node:22-bookworm-slim
RUN groupadd --system --gid 10001 causeway \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin causeway
WORKDIR /app
ENV NODE_ENV=production \
    HOME=/tmp
COPY --from=deps /src/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY --from=build /src/dist ./dist
USER 10001:10001
# status API / metrics, Node signaling, relay TCP and WebSockets
EXPOSE 9090 8787 4001 4002
ENTRYPOINT ["/app/bin/causeway"]
CMD ["--help"]
