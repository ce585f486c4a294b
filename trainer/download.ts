// Downloading data shards for `bilevel data prepare`: resumable (a broken transfer goes on
// from the bytes it has, with an HTTP Range request), checksummed (sha256, checked when the
// URL names one as `#sha256=HEX`, recorded always), retried a few times, with progress.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, renameSync, rmSync, statSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export interface DownloadOptions {
  /** Expected sha256 (hex); default: the URL's `#sha256=` fragment, if any. */
  readonly sha256?: string;
  /** Attempts after the first one (default 4). */
  readonly retries?: number;
  readonly onProgress?: (done: number, total: number | null) => void;
}

export interface Downloaded {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Whether the file was already complete (nothing fetched). */
  readonly cached: boolean;
}

/** A download that cannot succeed (HTTP 4xx, a checksum mismatch): not retried. */
export class DownloadError extends Error {
  override name = "DownloadError";
}

/** The URL without its fragment, and the sha256 the fragment names. */
export function parseShardUrl(raw: string): { url: string; sha256: string | null; name: string } {
  const u = new URL(raw);
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw new DownloadError(`${raw}: only http(s) URLs are downloaded`);
  }
  const m = /^#sha256=([0-9a-fA-F]{64})$/.exec(u.hash);
  if (u.hash !== "" && !m) throw new DownloadError(`${raw}: the fragment must be #sha256=<64 hex digits>`);
  u.hash = "";
  const name = decodeURIComponent(u.pathname.split("/").filter(Boolean).at(-1) ?? "shard");
  return { url: u.toString(), sha256: m?.[1]?.toLowerCase() ?? null, name };
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return hash.digest("hex");
}

const size = (file: string) => (existsSync(file) ? statSync(file).size : 0);

/** One attempt: fetch from where the partial file ends, append. Throws on a broken transfer. */
async function attempt(url: string, part: string, onProgress?: DownloadOptions["onProgress"]): Promise<void> {
  let start = size(part);
  const res = await fetch(url, {
    headers: start > 0 ? { Range: `bytes=${start}-` } : {},
    redirect: "follow",
  });
  if (res.status === 416 && start > 0) return; // nothing left to fetch
  if (res.status >= 400 && res.status < 500) throw new DownloadError(`${url}: HTTP ${res.status}`);
  if (res.status !== 200 && res.status !== 206) throw new Error(`${url}: HTTP ${res.status}`);
  if (res.status === 200 && start > 0) {
    rmSync(part, { force: true }); // the server ignored the range: start over
    start = 0;
  }
  const range = /\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
  const length = res.headers.get("content-length");
  const total = range ? Number(range[1]) : length !== null ? start + Number(length) : null;
  let done = start;
  onProgress?.(done, total);
  if (!res.body) throw new Error(`${url}: no body`);
  const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
  body.on("data", (chunk: Buffer) => {
    done += chunk.length;
    onProgress?.(done, total);
  });
  await pipeline(body, createWriteStream(part, { flags: "a" }));
  if (total !== null && size(part) < total)
    throw new Error(`${url}: ended at ${size(part)} of ${total} bytes`);
}

/** Download `rawUrl` to `dest` (resuming `dest.part`); a complete `dest` is kept as it is. */
export async function download(
  rawUrl: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<Downloaded> {
  const { url, sha256: fromUrl } = parseShardUrl(rawUrl);
  const expected = (options.sha256 ?? fromUrl)?.toLowerCase() ?? null;
  if (existsSync(dest)) {
    const sha256 = await sha256File(dest);
    if (expected === null || sha256 === expected)
      return { path: dest, bytes: size(dest), sha256, cached: true };
    rmSync(dest); // a different file than the one asked for
  }
  const part = `${dest}.part`;
  const retries = options.retries ?? 4;
  for (let i = 0; ; i++) {
    try {
      await attempt(url, part, options.onProgress);
      break;
    } catch (error) {
      if (error instanceof DownloadError || i >= retries) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** i, 5000)));
    }
  }
  const sha256 = await sha256File(part);
  if (expected !== null && sha256 !== expected) {
    rmSync(part, { force: true });
    throw new DownloadError(`${url}: sha256 ${sha256}, expected ${expected} (the download was removed)`);
  }
  renameSync(part, dest);
  return { path: dest, bytes: size(dest), sha256, cached: false };
}
