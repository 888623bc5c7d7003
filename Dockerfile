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
ENV NODE_ENV=production
