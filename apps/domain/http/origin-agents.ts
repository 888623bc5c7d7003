import http from "node:http";
import https from "node:https";

// Connections kept open to the places we POST to (outbound callbacks): a consumer called back
// several times a second pays for one TCP (and TLS) handshake, not one per callback. One agent per
// origin, so that a socket is only ever reused for the origin whose address check it passed: the
// check runs when the socket connects (the request's guarded lookup, address-check.ts), and a kept
// socket stays on the address it was checked on, whatever the name resolves to later.
export type OriginAgents = {
  agentFor: (url: URL) => http.Agent;
  // Closes every kept connection (a stopping process).
  close: () => void;
};

// A kept connection the server closed while it was idle fails as soon as it is written to, before
// any answer: such a request never reached the server, and may be sent once more on a fresh one.
const STALE_SOCKET_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);
export const failedOnStaleKeptSocket = (request: http.ClientRequest, error: unknown): boolean => {
  const code = (error as { code?: unknown } | undefined)?.code;
  return request.reusedSocket && typeof code === "string" && STALE_SOCKET_CODES.has(code);
};

export type OriginAgentsOptions = {
  // An idle connection is closed after this long (or sooner, when the server's Keep-Alive header
  // says it closes earlier: Node's agent then closes it a second before the server would).
  idleMs: number;
  // Origins kept; the least recently used beyond that is let go (its idle connections still close
  // on their own timer, and a request in flight on one finishes).
  maxOrigins: number;
  maxIdlePerOrigin: number;
};

export const createOriginAgents = (options: OriginAgentsOptions): OriginAgents => {
  const agents = new Map<string, http.Agent>();
  return {
    agentFor: (url) => {
      const key = url.origin;
      const known = agents.get(key);
      if (known) {
        // Most recently used last, so the first key is the one to let go.
        agents.delete(key);
        agents.set(key, known);
        return known;
      }
      const settings = { keepAlive: true, timeout: options.idleMs, maxFreeSockets: options.maxIdlePerOrigin, scheduling: "lifo" as const };
      const agent = url.protocol === "https:" ? new https.Agent(settings) : new http.Agent(settings);
      agents.set(key, agent);
      if (agents.size > options.maxOrigins) agents.delete(agents.keys().next().value!);
      return agent;
    },
    close: () => {
      for (const agent of agents.values()) agent.destroy();
      agents.clear();
    },
  };
};
