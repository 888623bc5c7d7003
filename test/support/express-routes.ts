import type { Express } from "express";

type Layer = {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  // A router has a stack; a mounted sub-app (bull-board's) has a router with one.
  handle?: { stack?: Layer[]; router?: { stack?: Layer[] } };
  rawPath?: string | string[];
};

const join = (prefix: string, path: string) => {
  const joined = `${prefix}/${path}`.replace(/\/+/g, "/");
  return joined.length > 1 ? joined.replace(/\/$/, "") : joined;
};

// Every (method, path) an Express 5 app routes, read from its router stack: route layers give their
// paths and methods; mounted routers (router 2's layers keep the mount path as `rawPath`) are walked
// under their prefix. `router.all` handlers (the 405 answers) are not routes of their own.
export const listExpressRoutes = (app: Express, options: { opaque?: string[] } = {}): { method: string; path: string }[] => {
  const found: { method: string; path: string }[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const path of [layer.route.path].flat()) {
          for (const method of Object.keys(layer.route.methods).filter((m) => m !== "_all")) found.push({ method, path: join(prefix, path) });
        }
      } else if (layer.handle?.stack || layer.handle?.router?.stack) {
        const inner = layer.handle.stack ?? layer.handle.router?.stack ?? [];
        const mounts = [layer.rawPath ?? "/"].flat();
        for (const mount of mounts) {
          const at = join(prefix, mount);
          if (options.opaque?.includes(at)) found.push({ method: "get", path: at });
          else walk(inner, at);
        }
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, "/");
  return found;
};

export const toOpenApiPath = (expressPath: string) => expressPath.replace(/:(\w+)/g, "{$1}");
