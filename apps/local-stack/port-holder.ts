import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";
import { localUrlFor } from "../domain/process/listen-url.ts";

// Before `npm start` launches anything: is each port it will listen on free, and if not, who holds
// it? A taken port otherwise shows as a child crashing on EADDRINUSE, or worse, as someone else's
// server answering /readyz and being announced as this stack.

export type StackPort = { port: number; variable: string; what: string };

// Listening on it is the only exact test (the kernel's own rules for wildcard and specific
// addresses, IPv4 and IPv6 apply); the trial socket is closed at once.
const takenCode = (host: string, port: number) =>
  new Promise<string | undefined>((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(undefined)));
  });

// Linux only: the listening sockets on this port (/proc/net/tcp*) and the processes whose file
// descriptors hold them. Processes of other users (or other containers) cannot be seen.
const listenerPids = (port: number): { pid: number; command: string }[] => {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const row of text.split("\n").slice(1)) {
      const fields = row.trim().split(/\s+/);
      const local = fields[1];
      // st 0A: LISTEN.
      if (!local || fields[3] !== "0A") continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port && fields[9]) inodes.add(`socket:[${fields[9]}]`);
    }
  }
  if (inodes.size === 0) return [];
  const found: { pid: number; command: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    const holds = fds.some((fd) => {
      try {
        return inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`));
      } catch {
        return false;
      }
    });
    if (!holds) continue;
    let command = "";
    try {
      command = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
    } catch {
      // gone meanwhile
    }
    found.push({ pid: Number(entry), command: command.length > 120 ? `${command.slice(0, 117)}...` : command });
  }
  return found;
};

// What answers there: this project's API and simulator answer /readyz and /healthz with JSON.
const httpAnswer = async (url: string): Promise<string> => {
  // A ref'd timer (AbortSignal.timeout's is not): a holder that never answers must not leave this
  // process with nothing to wait on, which would end it before it says anything.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 2_000);
  try {
    const res = await fetch(`${url}/readyz`, { signal: abort.signal });
    const body = (await res.text()).slice(0, 2_000);
    const ours = /"status"\s*:\s*"(ready|not_ready|ok)"/.test(body);
    return `it answers HTTP (GET /readyz: ${res.status}${ours ? ", like this project's API: another npm start?" : ""})`;
  } catch {
    return "it accepts connections but gave no HTTP answer within 2 s";
  } finally {
    clearTimeout(timer);
  }
};

export const describePortHolder = async (host: string, port: number): Promise<string> => {
  const holders = listenerPids(port);
  const who =
    holders.length > 0
      ? holders.map((h) => `pid ${h.pid}${h.command ? ` (${h.command})` : ""}`).join(", ")
      : "a process this user cannot see (another user's, or outside this container)";
  return `${who}; ${await httpAnswer(localUrlFor(host, port))}`;
};

// One line per taken port, saying which variable sets it and what holds it; empty when all are free.
export const takenPorts = async (host: string, ports: StackPort[]): Promise<string[]> => {
  const lines: string[] = [];
  for (const p of ports) {
    if (p.port === 0) continue;
    const code = await takenCode(host, p.port);
    if (code === undefined) continue;
    if (code !== "EADDRINUSE") {
      lines.push(`port ${p.port} (${p.variable}, ${p.what}) on ${host} cannot be listened on: ${code}`);
      continue;
    }
    lines.push(`port ${p.port} (${p.variable}, ${p.what}) on ${host} is taken by ${await describePortHolder(host, p.port)}`);
  }
  return lines;
};
