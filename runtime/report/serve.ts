// `bilevel serve`: the report page over HTTP on loopback only, kept live. The server polls the
// source's revision (a few cheap SQLite max() reads) and tells connected pages over Server-Sent
// Events; a page then fetches /content, which is rendered once per revision and cached.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type ReportSource, renderDocument } from "./source.ts";

export interface ServeOptions {
  /** 0 picks a free port. */
  readonly port: number;
  /** How often the source is checked for changes. */
  readonly pollMs?: number;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const HOST = "127.0.0.1";
const HEARTBEAT_MS = 15_000;

export async function serveReport(source: ReportSource, options: ServeOptions): Promise<RunningServer> {
  const clients = new Set<ServerResponse>();
  let revision = source.revision();
  let cached: { revision: string; title: string; body: string } | null = null;
  const content = async () => {
    const at = revision;
    if (cached?.revision !== at) cached = { revision: at, ...(await source.content()) };
    return cached;
  };
  const send = (res: ServerResponse, rev: string) => res.write(`event: revision\ndata: ${rev}\n\n`);
  let port = options.port;
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end(`report failed: ${(error as Error).message}`);
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Loopback only, and only under its own name: a page elsewhere cannot reach it by DNS rebinding.
    const host = req.headers.host ?? "";
    if (host !== `${HOST}:${port}` && host !== `localhost:${port}`) return plain(res, 403, "forbidden host");
    if (req.method !== "GET" && req.method !== "HEAD") return plain(res, 405, "GET only");
    const url = new URL(req.url ?? "/", `http://${HOST}:${port}`);
    if (url.pathname === "/") {
      const html = await renderDocument(source, { events: "/events", content: "/content", revision });
      return send200(res, "text/html; charset=utf-8", html);
    }
    if (url.pathname === "/content") return send200(res, "text/html; charset=utf-8", (await content()).body);
    if (url.pathname === "/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      res.write("retry: 2000\n\n");
      send(res, revision);
      clients.add(res);
      req.on("close", () => clients.delete(res));
      return;
    }
    return plain(res, 404, "not found");
  }
  const poll = setInterval(() => {
    let next: string;
    try {
      next = source.revision();
    } catch {
      return; // a store mid-write or a study file being replaced: try again next tick
    }
    if (next === revision) return;
    revision = next;
    for (const c of clients) send(c, next);
  }, options.pollMs ?? 500);
  const heartbeat = setInterval(() => {
    for (const c of clients) c.write(": ping\n\n");
  }, HEARTBEAT_MS);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, HOST, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${HOST}:${port}/`,
    port,
    close: async () => {
      clearInterval(poll);
      clearInterval(heartbeat);
      for (const c of clients) c.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(`${text}\n`);
}

function send200(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
}
