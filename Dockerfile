# One image for every app; the compose file picks the entry point.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY patches ./patches
COPY prisma ./prisma
COPY apps/domain/config/defaults.ts ./apps/domain/config/defaults.ts
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY apps ./apps
# The apps run from this build (ops/build), not through tsx; the sources stay beside it for what
# the code reads next to itself (Lua scripts, the dashboard) and for the source maps.
COPY ops/build ./ops/build
RUN node ops/build/build-apps.mjs
ENV NODE_ENV=production
