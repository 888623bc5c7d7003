import { z } from "zod";

// Where a server listens: loopback unless told otherwise (HOST=0.0.0.0 in a container), so a local
// run does not expose the API or the simulator's unauthenticated admin routes to the network.
export const listenHostEnv = {
  HOST: z.string().min(1).default("127.0.0.1"),
};

// The URL this machine reaches a server on: a wildcard address is reached through loopback.
export const localUrlFor = (host: string, port: number) => {
  const reachable = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return `http://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
};
