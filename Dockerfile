# causeway: one image for `causeway agent`, `causeway relay` and `causeway signaling`.
# Node comes from the base image (the `node` npm dependency is dropped from the image);
# TypeScript runs directly through Node 22's type stripping. Runs as the non-root user 10001
# and works with a read-only root filesystem (only /tmp must be writable).

# 1. The debug page bundle (needs esbuild from the dev dependencies).
FROM node:22-bookworm-slim AS page
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY protocol ./protocol
COPY agent ./agent
COPY signaling ./signaling
RUN node --disable-warning=ExperimentalWarning signaling/page/build.ts

# 2. Production dependencies only.
FROM node:22-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
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
COPY protocol ./protocol
COPY agent ./agent
COPY relay ./relay
COPY signaling ./signaling
COPY --from=page /src/signaling/page/dist ./signaling/page/dist
USER 10001:10001
# status API / metrics, Node signaling, relay TCP and WebSockets
EXPOSE 9090 8787 4001 4002
ENTRYPOINT ["./bin/causeway"]
CMD ["--help"]
