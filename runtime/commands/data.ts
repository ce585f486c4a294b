// `bilevel data prepare --from SOURCE... --out DIR`: text for GPU-scale runs. Sources are
// folders or files (.txt, .jsonl, their .gz, .parquet) or http(s) URLs of such shards, which
// are downloaded into DIR/.downloads first (resumable, sha256-checked with `URL#sha256=HEX`,
// progress on stderr). Then trainer/prepare.py writes DIR as a prepared folder in the
// trainer's cache format with the fixed validation split; `--data DIR` (or `dataDir`) uses it.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import cliProgress from "cli-progress";
import { type Command, CommanderError } from "commander";
import { childEnv } from "../../trainer/child-env.ts";
import { DownloadError, type Downloaded, download, parseShardUrl } from "../../trainer/download.ts";
import { findPython } from "../../trainer/python.ts";
import { trainerEnv } from "../../trainer/torch-trainer.ts";
import { canStyle } from "../terminal-text.ts";

interface PrepareOptions {
  from: string[];
  out: string;
  tokenizer: string;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

export function registerDataCommand(program: Command): void {
  const data = program.command("data").description("training data for the trainer");
  data
    .command("prepare")
    .description(
      "folders, files or http(s) URLs of text shards (.txt, .jsonl, .gz, .parquet) into a prepared " +
        "folder with the fixed validation split (train on it with --data DIR)",
    )
    .requiredOption("--from <source...>", "folders, files or URLs (URL#sha256=HEX checks the download)")
    .requiredOption("--out <dir>", "the prepared folder (downloads go to DIR/.downloads)")
    .option(
      "--tokenizer <kind>",
      "byte (default) or bpe:N, a SentencePiece BPE of N tokens trained on the training split",
      "byte",
    )
    .exitOverride((err) => {
      if (err.exitCode !== 0) throw new CommanderError(2, err.code, err.message);
      throw err;
    })
    .action(async (opts: PrepareOptions) => {
      process.exitCode = await prepare(opts);
    });
}

/** Download one URL with a progress bar (or start and end lines when stderr is not a terminal). */
async function fetchShard(url: string, dest: string): Promise<Downloaded> {
  const styled = canStyle(process.stderr);
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${path.basename(dest)} |{bar}| {value}/{total} bytes`,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  if (!styled) process.stderr.write(`downloading ${url}\n`);
  try {
    return await download(url, dest, {
      onProgress: (done, total) => {
        if (!styled) return;
        if (!started) bar.start(total ?? 0, done);
        started = true;
        if (total !== null) bar.setTotal(total);
        bar.update(done);
      },
    });
  } finally {
    if (started) bar.stop();
  }
}

async function localSources(
  opts: PrepareOptions,
  out: string,
): Promise<{ sources: string[]; errors: string[] }> {
  const sources: string[] = [];
  const errors: string[] = [];
  const manifest: Record<string, unknown>[] = [];
  for (const [i, src] of opts.from.entries()) {
    if (!isUrl(src)) {
      if (existsSync(src)) sources.push(path.resolve(src));
      else errors.push(`${src} does not exist`);
      continue;
    }
    const { name } = parseShardUrl(src);
    const dir = path.join(out, ".downloads");
    mkdirSync(dir, { recursive: true });
    // The index keeps the sources' order and two shards of the same name apart.
    const d = await fetchShard(src, path.join(dir, `${String(i).padStart(4, "0")}-${name}`));
    manifest.push({ url: src, file: d.path, bytes: d.bytes, sha256: d.sha256, cached: d.cached });
    writeFileSync(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    sources.push(d.path);
  }
  return { sources, errors };
}

async function prepare(opts: PrepareOptions): Promise<number> {
  const out = path.resolve(opts.out);
  let local: { sources: string[]; errors: string[] };
  try {
    local = await localSources(opts, out);
  } catch (error) {
    const why =
      error instanceof DownloadError ? error.message : `download failed: ${(error as Error).message}`;
    process.stderr.write(`bilevel data prepare: ${why}\n`);
    return error instanceof DownloadError && /HTTP 4|fragment|only http/.test(why) ? 2 : 1;
  }
  if (local.errors.length > 0) {
    process.stderr.write(`bilevel data prepare: ${local.errors.join("\n  ")}\n`);
    return 2;
  }
  const found = findPython("numpy", process.env, "cpu");
  if (!found.ok) {
    process.stderr.write(`bilevel data prepare: ${found.error}\n`);
    return 1;
  }
  const args = ["-m", "trainer.prepare", out, ...local.sources, "--tokenizer", opts.tokenizer];
  const r = spawnSync(found.python, args, {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
    env: trainerEnv(childEnv(process.env)),
  });
  if (r.status !== 0) {
    const why = (r.stderr ?? "").trim().replace(/^prepare: /, "");
    process.stderr.write(`bilevel data prepare: ${why || `exit ${r.status}`}\n`);
    return r.status === 2 ? 2 : 1;
  }
  const meta = JSON.parse(r.stdout) as {
    documents: number;
    train_tokens: number;
    val_tokens: number;
    vocab_size: number;
  };
  const [unit, vocab] =
    opts.tokenizer === "byte" ? ["bytes", ""] : ["tokens", ` (BPE, ${meta.vocab_size} tokens)`];
  process.stdout.write(
    `prepared ${out}: ${meta.documents} documents, train ${meta.train_tokens} ${unit}, ` +
      `validation ${meta.val_tokens} ${unit}${vocab}\n` +
      `train on it with --data ${out} (or "dataDir" in a run config)\n`,
  );
  return 0;
}
