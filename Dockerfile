# strangler-proxy image: build stage compiles TypeScript; the runtime stage has
# only production dependencies and the compiled JS, and runs as the non-root
# "node" user (uid 1000) that the official image provides.
#
#   docker build -t strangler-proxy .
#   docker run -p 8010:8010 -p 127.0.0.1:8081:8081 -v "$PWD/config:/config:ro" strangler-proxy
#
# Mount the *folder* that holds routes.yaml (or a Kubernetes ConfigMap) at
# /config, not the file alone: editors and kubelet replace the file by rename,
# which a single-file bind mount would never show to the container.

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would build before the sources are copied in.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    PORT=8010 \
    ADMIN_PORT=8081 \
    ADMIN_HOST=0.0.0.0 \
    STRANGLER_CONFIG=/config/routes.yaml \
    STRANGLER_DATA_DIR=/data \
    LOG_FORMAT=json
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# A default routes file so the image starts; mount your own folder over /config.
COPY --chown=node:node routes.yaml /config/routes.yaml
# The embedded store of work on Taskcluster queues (ids clients keep, task definitions): keep it
# on a volume, or set STRANGLER_STORE to a postgres:// URL (docs/store.md).
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
# 8010: the proxy (Buildbot's own default port). 8081: /metrics, /healthz, /readyz,
# bound to 0.0.0.0 inside the container so Prometheus can scrape it; publish it
# only on a private network.
EXPOSE 8010 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.ADMIN_PORT || 8081) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains requests in flight and exits 0; SIGHUP reloads routes.yaml.
STOPSIGNAL SIGTERM
# The same node flag as `npm start` (package.json; docs/performance.md, "Node flags", says why); a unit test keeps them in step.
ENTRYPOINT ["node", "--heap-growing-percent=50", "dist/cli.js"]
CMD ["serve"]
