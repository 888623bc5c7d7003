// The least a callback's path must do, bare, as its own process for `npm run bench:callbacks`: take
// an HTTP POST, commit one durable INSERT (autocommit: one fsync with the server's settings),
// answer, and POST the body on to the consumer over a kept connection. No express, no Kysely, no
// NOTIFY, no second process: what ours costs beyond this is ours. Listens on BARE_PORT; POST
// /in/<id>/x is sent on to <BARE_CONSUMER_URL>/b/<id>. Prints "bare path listening" when ready.
import http from "node:http";
import pg from "pg";

const databaseUrl = process.env.DATABASE_URL;
const consumerUrl = process.env.BARE_CONSUMER_URL;
const port = Number(process.env.BARE_PORT);
if (!databaseUrl || !consumerUrl || !Number.isInteger(port)) throw new Error("DATABASE_URL, BARE_CONSUMER_URL and BARE_PORT are needed");

const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
await pool.query(`create table if not exists bare_callback (id uuid primary key, body text not null, received_at timestamptz not null default now())`);
const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const id = /^\/in\/([0-9a-f-]{36})\//i.exec(req.url ?? "")?.[1];
    if (!id) return void res.writeHead(404).end();
    const body = Buffer.concat(chunks).toString("utf8");
    pool.query("insert into bare_callback (id, body) values ($1, $2)", [id, body]).then(
      () => {
        res.writeHead(200).end();
        const out = http.request(`${consumerUrl}/b/${id}`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (answer) => answer.resume());
        out.on("error", (error) => console.error(`bare out ${id}: ${error.message}`));
        out.end(body);
      },
      (error: Error) => {
        console.error(`bare insert ${id}: ${error.message}`);
        res.writeHead(503).end();
      },
    );
  });
});
server.listen(port, "127.0.0.1", () => console.log("bare path listening"));
process.on("SIGTERM", () => {
  server.close();
  agent.destroy();
  void pool.end().then(() => process.exit(0));
});
