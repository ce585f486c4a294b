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

/** What the request handler shares with the poller: the source, its last revision, the open event streams. */
class LiveState {
  readonly clients = new Set<ServerResponse>();
  revision: string;
  port = 0;
  private cached: { revision: string; body: string } | null = null;
  readonly source: ReportSource;

  constructor(source: ReportSource) {
    this.source = source;
    this.revision = source.revision();
  }

  /** The page's content at the current revision, rendered once per revision. */
  async content(): Promise<string> {
    const at = this.revision;
    if (this.cached?.revision !== at)
      this.cached = { revision: at, body: (await this.source.content()).body };
    return this.cached.body;
  }

  /** Check the source; tell every page when it changed. */
  poll(): void {
    let next: string;
    try {
      next = this.source.revision();
    } catch {
      return; // a store mid-write or a study file being replaced: try again next tick
    }
    if (next === this.revision) return;
    this.revision = next;
    for (const c of this.clients) sendRevision(c, next);
  }
}

const sendRevision = (res: ServerResponse, revision: string) =>
  res.write(`event: revision\ndata: ${revision}\n\n`);

async function handle(state: LiveState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Loopback only, and only under its own name: a page elsewhere cannot reach it by DNS rebinding.
  const host = req.headers.host ?? "";
  if (host !== `${HOST}:${state.port}` && host !== `localhost:${state.port}`)
    return plain(res, 403, "forbidden host");
  if (req.method !== "GET" && req.method !== "HEAD") return plain(res, 405, "GET only");
  const { pathname } = new URL(req.url ?? "/", `http://${HOST}:${state.port}`);
  if (pathname === "/") {
    const live = { events: "/events", content: "/content", revision: state.revision };
    return html(res, await renderDocument(state.source, live));
  }
  if (pathname === "/content") return html(res, await state.content());
  if (pathname === "/events") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    res.write("retry: 2000\n\n");
    sendRevision(res, state.revision);
    state.clients.add(res);
    req.on("close", () => state.clients.delete(res));
    return;
  }
  return plain(res, 404, "not found");
}

export async function serveReport(source: ReportSource, options: ServeOptions): Promise<RunningServer> {
  const state = new LiveState(source);
  const server = createServer((req, res) => {
    handle(state, req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end(`report failed: ${(error as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, HOST, () => resolve());
  });
  state.port = (server.address() as AddressInfo).port;
  const poll = setInterval(() => state.poll(), options.pollMs ?? 500);
  const heartbeat = setInterval(() => {
    for (const c of state.clients) c.write(": ping\n\n");
  }, HEARTBEAT_MS);
  return {
    url: `http://${HOST}:${state.port}/`,
    port: state.port,
    close: async () => {
      clearInterval(poll);
      clearInterval(heartbeat);
      for (const c of state.clients) c.end();
      state.clients.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(`${text}\n`);
}

function html(res: ServerResponse, body: string): void {
  res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
}
