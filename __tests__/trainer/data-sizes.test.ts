// The split sizes known without training (trainer/data-sizes.ts), checked against what
// trainer/data.py actually prepares, and the config check they feed: a device's evaluation size
// must fit the validation split, or the run config is refused when it is resolved.
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, resolveRunConfig } from "../../runtime/config.ts";
import { DEFAULT_CORPUS, splitOf, splitSizes } from "../../trainer/data-sizes.ts";
import { defaultEvalBytes } from "../../trainer/search-space.ts";

const repo = path.resolve(import.meta.dirname, "../..");
let tmp: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-sizes-"));
  env = { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache") };
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The sizes trainer/data.py prepares for a folder (null: the default corpus). */
function prepared(dir: string | null): { train: number; val: number } {
  const arg = dir === null ? "None" : JSON.stringify(dir);
  const r = spawnSync(
    "/usr/bin/python3",
    ["-c", `from trainer.data import load; c = load(${arg}); print(len(c.train), len(c.val))`],
    { cwd: repo, encoding: "utf8", env: { ...env, PYTHONPATH: repo }, timeout: 60_000 },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  const [train, val] = r.stdout.trim().split(" ").map(Number);
  return { train: train!, val: val! };
}

const resolve = (partial: object) =>
  resolveRunConfig(partial, { baseDir: tmp, label: "test" }, { probeCuda: () => false });

test("the default corpus: sizes from file sizes equal what the trainer prepares", () => {
  const sizes = splitSizes(null, env);
  expect(sizes.source).toBe(DEFAULT_CORPUS);
  expect({ train: sizes.train, val: sizes.val }).toEqual(prepared(null));
});

test("the GPU evaluation size fits the default corpus's validation split (every default CUDA trial ran into it)", () => {
  const { val } = splitSizes(null, env);
  expect(val).toBe(1_048_576);
  expect(defaultEvalBytes("cuda") + 1).toBeLessThanOrEqual(val); // 2^20 + 1 did not
  expect(resolve({ device: "cuda" }).device).toBe("cuda");
});

test(".txt and .jsonl (unicode, blank and CRLF lines, nested folders): the sizes the trainer prepares", () => {
  const dir = path.join(tmp, "mixed");
  mkdirSync(path.join(dir, "a/b"), { recursive: true });
  const txt = readdirSync(DEFAULT_CORPUS).slice(0, 40);
  for (const f of txt) copyFileSync(path.join(DEFAULT_CORPUS, f), path.join(dir, "a/b", f));
  const lines = [
    "",
    JSON.stringify({ text: "ünïcödé — “quotes” 😀" }),
    "  ",
    JSON.stringify({ text: "x".repeat(5000) }),
  ];
  writeFileSync(path.join(dir, "docs.jsonl"), `${lines.join("\r\n")}\r\n`);
  writeFileSync(path.join(dir, "notes.md"), "not read");
  const sizes = splitSizes(dir, env);
  expect({ train: sizes.train, val: sizes.val }).toEqual(prepared(dir));
  // The .jsonl lengths are cached; a changed file (size or mtime) is read again.
  writeFileSync(path.join(dir, "docs.jsonl"), `${JSON.stringify({ text: "y".repeat(9000) })}\n`);
  utimesSync(path.join(dir, "docs.jsonl"), new Date(), new Date(Date.now() + 5000));
  const again = splitSizes(dir, env);
  expect({ train: again.train, val: again.val }).toEqual(prepared(dir));
  expect(again.train + again.val).not.toBe(sizes.train + sizes.val);
});

test("a prepared folder (a carried cache entry) gives its sizes from meta.json", () => {
  const cache = path.join(tmp, "cache");
  const entries = readdirSync(cache).filter((d) => /^[0-9a-f]{16}$/.test(d));
  const sizes = entries.map((e) => splitSizes(path.join(cache, e), env));
  const sotu = sizes.find((s) => s.val === 1_048_576)!; // the default corpus's entry
  expect(sotu.train).toBe(splitSizes(null, env).train);
  expect({ train: sotu.train, val: sotu.val }).toEqual(prepared(sotu.source));
});

test("trainer/prepare.py (data prepare) streams the same split the trainer's cache holds", () => {
  const out = path.join(tmp, "prepared-sotu");
  const r = spawnSync("/usr/bin/python3", ["-m", "trainer.prepare", out, DEFAULT_CORPUS], {
    cwd: repo,
    encoding: "utf8",
    env: { ...env, PYTHONPATH: repo },
    timeout: 120_000,
  });
  expect(r.status).toBe(0);
  const cache = path.join(tmp, "cache");
  const entry = readdirSync(cache)
    .filter((e) => /^[0-9a-f]{16}$/.test(e))
    .map((e) => path.join(cache, e))
    .find((e) => splitSizes(e, env).val === 1_048_576)!;
  for (const f of ["train.bin", "val.bin", "val_bytes.bin"]) {
    expect(readFileSync(path.join(out, f)).equals(readFileSync(path.join(entry, f)))).toBe(true);
  }
});

test("splitOf: 32 KiB blocks, every tenth is validation, a partial last block counts", () => {
  const B = 32 * 1024;
  expect(splitOf(9 * B)).toEqual({ train: 9 * B, val: 0 });
  expect(splitOf(9 * B + 100)).toEqual({ train: 9 * B, val: 100 });
  expect(splitOf(20 * B)).toEqual({ train: 18 * B, val: 2 * B });
});

test("a run whose evaluation size does not fit its data is refused at resolution, naming both sizes", () => {
  const dir = path.join(tmp, "two-mb");
  mkdirSync(dir);
  writeFileSync(path.join(dir, "a.txt"), "All work and no play. ".repeat(100_000)); // 2.2 MB: 6 validation blocks
  expect(resolve({ device: "cpu", dataDir: dir }).device).toBe("cpu"); // 131072 fits 196608
  let error: unknown;
  try {
    resolve({ device: "cuda", dataDir: dir });
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).exitCode).toBe(2);
  expect((error as Error).message).toMatch(
    /evaluation size \(524288 bytes\) does not fit the validation split/,
  );
  expect((error as Error).message).toMatch(/\(196608 bytes; it needs at least 524289\)/);
  // An external trainer reads its own data: no check.
  writeFileSync(path.join(tmp, "train.py"), "DEPTH = 2\n");
  const ext = resolve({
    device: "cuda",
    dataDir: dir,
    trainer: { kind: "external", script: "train.py" },
    activeParams: ["DEPTH"],
  });
  expect(ext.device).toBe("cuda");
});

test("a folder without text is refused at resolution too", () => {
  const dir = path.join(tmp, "empty");
  mkdirSync(dir);
  expect(() => resolve({ device: "cpu", dataDir: dir })).toThrow(
    /dataDir: data folder .* has no \.txt or \.jsonl files/,
  );
});
