# causeway: one image for `causeway agent`, `causeway relay` and `causeway signaling`.
# Node comes from the base image (the `node` npm dependency is dropped from the image);
# the CLI runs from the compiled dist/cli bundle (bin/causeway falls back to the TypeScript
# sources through Node 22's type stripping when the bundle is older). Runs as the non-root user 10001
# and works with a read-only root filesystem (only /tmp must be writable).

# 1. Build: the CLI bundle (dist/cli) and the debug page (needs esbuild from the dev dependencies).
#    `npm install`, not `npm ci`: see the README's quick start for why the lock needs it.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm install --no-audit --no-fund --ignore-scripts
COPY protocol ./protocol
COPY agent ./agent
COPY peer ./peer
COPY cli ./cli
COPY relay ./relay
COPY signaling ./signaling
COPY scripts ./scripts
RUN node --disable-warning=ExperimentalWarning scripts/build-cli.ts \
 && node --disable-warning=ExperimentalWarning signaling/page/build.ts

# 2. Production dependencies only.
FROM node:22-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts \
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
COPY peer ./peer
COPY cli ./cli
COPY relay ./relay
COPY signaling ./signaling
COPY --from=build /src/signaling/page/dist ./signaling/page/dist
COPY --from=build /src/dist ./dist
USER 10001:10001
# status API / metrics, Node signaling, relay TCP and WebSockets
EXPOSE 9090 8787 4001 4002
ENTRYPOINT ["./bin/causeway"]
CMD ["--help"]
