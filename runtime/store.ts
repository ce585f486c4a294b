// One SQLite database per run (WAL): everything the run did, so that it can be resumed,
// reported and audited. Writes that belong together go in one transaction.
import {
  accessSync,
  appendFileSync,
  constants,
  existsSync,
  mkdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { Change, Config, HookName, Json, Manifest, TrialStatus } from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "../sandbox/capabilities/state.ts";
import type { CapabilityState, ValidationReport } from "../sandbox/types.ts";
import { type ResolvedRunConfig, withNewDefaults } from "./config.ts";
import { UserError } from "./errors.ts";

// 2: the resolved run config; mechanisms.design_name.
// 3: trials.git_commit (a user's train.py under git), or (a parallel line of work) llm_exchanges'
//    error_code, finish_reason, reasoning, reasoning_tokens, mode. 4: both. 5: the jobs table
//    (trials in flight: executor, slot, job id; created by the DDL, so an older database gains it).
const SCHEMA_VERSION = 5;

/** Columns added since version 2, all nullable: an older database gains them when opened to write. */
const ADDED_COLUMNS: readonly (readonly [table: string, column: string, type: string])[] = [
  ["trials", "git_commit", "TEXT"],
  ["llm_exchanges", "error_code", "TEXT"],
  ["llm_exchanges", "finish_reason", "TEXT"],
  ["llm_exchanges", "reasoning", "TEXT"],
  ["llm_exchanges", "reasoning_tokens", "INTEGER"],
  ["llm_exchanges", "mode", "TEXT"],
];

const DDL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS search_configs (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, cycle INTEGER NOT NULL, source TEXT NOT NULL,
  config_json TEXT NOT NULL, rationale TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, attempt INTEGER NOT NULL, source TEXT NOT NULL,
  mechanism_id TEXT, changes_json TEXT NOT NULL, rationale TEXT NOT NULL, config_json TEXT,
  status TEXT NOT NULL, reason TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, kind TEXT NOT NULL, proposal_id INTEGER,
  seed INTEGER NOT NULL, config_json TEXT NOT NULL, changes_json TEXT NOT NULL, status TEXT NOT NULL,
  val_bpb REAL, kept INTEGER NOT NULL, delta REAL, result_json TEXT, message TEXT NOT NULL,
  duration_ms REAL NOT NULL, description TEXT NOT NULL, created_at TEXT NOT NULL, git_commit TEXT);
CREATE TABLE IF NOT EXISTS llm_exchanges (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, purpose TEXT NOT NULL, model TEXT NOT NULL,
  messages_json TEXT NOT NULL, reply TEXT, error TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
  latency_ms REAL NOT NULL, created_at TEXT NOT NULL, error_code TEXT, finish_reason TEXT, reasoning TEXT,
  reasoning_tokens INTEGER, mode TEXT);
CREATE TABLE IF NOT EXISTS mechanisms (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, origin TEXT NOT NULL, status TEXT NOT NULL,
  source TEXT NOT NULL, js TEXT, source_hash TEXT, js_hash TEXT, manifest_json TEXT,
  validation_json TEXT, state_json TEXT, capabilities_json TEXT, reason TEXT,
  created_iteration INTEGER NOT NULL, activated_iteration INTEGER, design_name TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, mechanism_id TEXT NOT NULL, hook TEXT NOT NULL,
  outcome TEXT NOT NULL, detail_json TEXT NOT NULL, latency_ms REAL NOT NULL,
  proposal_id INTEGER, trial_id INTEGER, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, level TEXT NOT NULL, kind TEXT NOT NULL,
  message TEXT NOT NULL, data_json TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  trial_id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, kind TEXT NOT NULL, proposal_id INTEGER,
  seed INTEGER NOT NULL, description TEXT NOT NULL, executor TEXT NOT NULL, slot INTEGER NOT NULL,
  job_id TEXT, work_dir TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
  submitted_ms REAL NOT NULL, started_ms REAL, ended_ms REAL, recorded_ms REAL);
CREATE INDEX IF NOT EXISTS ledger_by_mechanism ON ledger (mechanism_id, iteration);
CREATE INDEX IF NOT EXISTS trials_by_iteration ON trials (iteration);
`;

export type TrialKind = "baseline" | "search";
export type MechanismOrigin = "library" | "file" | "generated";
export type MechanismStatus =
  | "active"
  | "pending-approval"
  | "approved"
  | "rejected"
  | "quarantined"
  | "retired";
export type EventLevel = "run" | "1" | "1.5" | "2";

export interface TrialRow {
  readonly id: number;
  readonly iteration: number;
  readonly kind: TrialKind;
  readonly proposalId: number | null;
  readonly seed: number;
  readonly config: Config;
  readonly changes: readonly Change[];
  readonly status: TrialStatus;
  readonly valBpb: number | null;
  readonly kept: boolean;
  readonly delta: number | null;
  readonly result: Json | null;
  readonly message: string;
  readonly durationMs: number;
  readonly description: string;
  /** The git commit of the script that ran (a user's train.py under git); results.tsv's first column. */
  readonly commit?: string | null;
}

/** Where a trial is: held, queued or running on an executor; `done` once its trial row is stored. */
export type JobState = "submitted" | "running" | "done" | "cancelled";

/**
 * A trial handed to an executor (one row per trial id; a rerun after a resume updates it). Written
 * before the trial can start, so a killed run finds its trials in flight: the id the trial keeps,
 * its iteration and proposal, and the executor's job id to reattach to.
 */
export interface JobRow {
  readonly trialId: number;
  readonly iteration: number;
  readonly kind: TrialKind;
  readonly proposalId: number | null;
  readonly seed: number;
  readonly description: string;
  readonly executor: string;
  readonly slot: number;
  /** The executor's id for it (Slurm: the job id); null for a local trial. */
  readonly jobId: string | null;
  readonly workDir: string;
  readonly state: JobState;
  readonly attempts: number;
  /** Epoch milliseconds: handed to the executor, seen running, outcome available, trial stored. */
  readonly submittedMs: number;
  readonly startedMs: number | null;
  readonly endedMs: number | null;
  readonly recordedMs: number | null;
}

export interface ProposalRow {
  readonly id: number;
  readonly iteration: number;
  readonly attempt: number;
  readonly source: string;
  readonly mechanismId: string | null;
  readonly changes: readonly Change[];
  readonly rationale: string;
  readonly config: Config | null;
  readonly status: string;
  readonly reason: string | null;
}

export interface MechanismRow {
  readonly id: string;
  readonly name: string;
  readonly origin: MechanismOrigin;
  readonly status: MechanismStatus;
  readonly source: string;
  readonly js: string | null;
  readonly sourceHash: string | null;
  readonly jsHash: string | null;
  readonly manifest: Manifest | null;
  readonly validation: ValidationReport | null;
  readonly state: Json;
  readonly capabilities: CapabilityState;
  readonly reason: string | null;
  readonly createdIteration: number;
  readonly activatedIteration: number | null;
  /** The name a Level 2 research session designed (the code's manifest may name it differently). */
  readonly designName: string | null;
}

export interface LedgerRow {
  readonly id: number;
  readonly iteration: number;
  readonly mechanismId: string;
  readonly hook: HookName;
  readonly outcome: string;
  readonly detail: Json;
  readonly latencyMs: number;
  readonly proposalId: number | null;
  readonly trialId: number | null;
}

export interface SearchConfigRow {
  readonly id: number;
  readonly iteration: number;
  readonly cycle: number;
  readonly source: string;
  readonly config: SearchConfig;
  readonly rationale: string;
}

/** The inner loop's search settings, which Level 1.5 adjusts. */
export interface SearchConfig {
  readonly strategy: "explore" | "exploit" | "balanced";
  readonly active: readonly string[];
  readonly frozen: readonly string[];
  readonly guidance: string;
}

export interface ExchangeInput {
  readonly iteration: number;
  readonly purpose: string;
  readonly model: string;
  readonly messages: Json;
  readonly reply: string | null;
  readonly error: string | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly latencyMs: number;
  /** The fault's class (client.ts LlmErrorCode), null when the exchange was usable. */
  readonly errorCode?: string | null;
  readonly finishReason?: string | null;
  /** A reasoning model's reasoning text (stored, never parsed) and its share of the completion tokens. */
  readonly reasoning?: string | null;
  readonly reasoningTokens?: number | null;
  /** The structured-output mode of a JSON request. */
  readonly mode?: string | null;
}

/** LLM use of one purpose in one iteration, summed over its exchanges. */
export interface LlmUsageRow {
  readonly purpose: string;
  readonly iteration: number;
  readonly exchanges: number;
  readonly failed: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
  readonly latencyMs: number;
}

type Row = Record<string, SQLInputValue>;

// SQLite's primary result codes (node:sqlite errors carry them as `errcode`).
const SQLITE_READONLY = 8;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;

/** What went wrong, for the CLI: disk full, or the run folder cannot be written. */
export type StoreErrorCode = "disk-full" | "not-writable";

/** A run-store failure with a plain cause; `dir` is the run folder. The run stays resumable. */
export class StoreError extends UserError {
  readonly code: StoreErrorCode;
  readonly dir: string;

  constructor(code: StoreErrorCode, dir: string, message: string, cause?: unknown) {
    // A folder that cannot be written is bad input (nothing ran); a full disk stops a run (resumable).
    super(message, code === "not-writable" ? 2 : 1);
    if (cause !== undefined) this.cause = cause;
    this.name = "StoreError";
    this.code = code;
    this.dir = dir;
  }

  /** A typed error for a raw SQLite error that has a plain cause (disk full, read-only); else null. */
  static from(error: unknown, dir: string): StoreError | null {
    if (error instanceof StoreError) return error;
    const errcode = (error as { errcode?: unknown } | null)?.errcode;
    if (typeof errcode !== "number") return null;
    const where = path.resolve(dir);
    const primary = errcode & 0xff; // extended result codes keep the primary code in the low byte
    if (primary === SQLITE_FULL) {
      return new StoreError(
        "disk-full",
        where,
        `disk full: cannot write the run database in ${where} (SQLITE_FULL); the step in progress ` +
          "was not recorded: free space, then resume the run",
        error,
      );
    }
    if (primary === SQLITE_READONLY || primary === SQLITE_CANTOPEN) {
      const target = [where, RunStore.dbPath(where)].find((p) => existsSync(p) && writeError(p) !== null);
      if (target) {
        return new StoreError(
          "not-writable",
          where,
          `cannot write the run database in ${where}: ${target} is not writable (${writeError(target)})`,
          error,
        );
      }
    }
    return null;
  }
}

/** The errno code when `file` cannot be written (EROFS even for root on a read-only mount), else null. */
function writeError(file: string): string | null {
  try {
    accessSync(file, constants.W_OK);
    return null;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? "EACCES";
  }
}

/**
 * mkdir -p that says why it failed: Node's recursive mkdir reports EROFS as ENOENT (and loops
 * under /proc), so each missing folder is made on its own, below the nearest existing one.
 * Returns the folders it made, outermost first.
 */
export function makeRunFolder(dir: string): string[] {
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let at = target; !existsSync(at); at = path.dirname(at)) {
    missing.unshift(at);
    if (path.dirname(at) === at) break;
  }
  const refuse = (reason: string, code: StoreErrorCode = "not-writable", cause?: unknown): never => {
    throw new StoreError(code, target, `cannot create the run folder ${target}: ${reason}`, cause);
  };
  const made: string[] = [];
  for (const folder of missing) {
    try {
      mkdirSync(folder);
      made.push(folder);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
      if (code === "EEXIST" && statSync(folder, { throwIfNoEntry: false })?.isDirectory()) continue;
      const parent = path.dirname(folder);
      if (code === "ENOSPC" || code === "EDQUOT")
        refuse(`the disk holding ${parent} is full (${code})`, "disk-full", error);
      if (code === "ENOTDIR") refuse(`${parent} is a file, not a folder`, "not-writable", error);
      if (code === "EEXIST") refuse(`${folder} exists and is not a folder`, "not-writable", error);
      refuse(`${parent} is not writable (${code})`, "not-writable", error);
    }
  }
  if (!statSync(target).isDirectory()) refuse("it exists and is not a folder");
  const denied = writeError(target);
  if (denied) {
    throw new StoreError(
      "not-writable",
      target,
      `cannot write in the run folder ${target}: it is not writable (${denied})`,
    );
  }
  return made;
}

const now = () => new Date().toISOString();
const json = (value: unknown) => JSON.stringify(value);
function parse<T>(text: unknown): T {
  return JSON.parse(String(text)) as T;
}
function parseOrNull<T>(text: unknown): T | null {
  return text === null || text === undefined ? null : (JSON.parse(String(text)) as T);
}
const numOrNull = (v: unknown) => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v: unknown) => (v === null || v === undefined ? null : String(v));

export class RunStore {
  readonly dir: string;
  private readonly db: DatabaseSync;

  private constructor(dir: string, db: DatabaseSync) {
    // Absolute, because trainers run in other working directories.
    this.dir = path.resolve(dir);
    this.db = db;
  }

  static dbPath(dir: string): string {
    return path.join(dir, "run.db");
  }

  static exists(dir: string): boolean {
    return existsSync(RunStore.dbPath(dir));
  }

  /** Whether `dir`'s run database holds no table yet (created, then killed before its schema); false when unreadable. */
  static hasNoTables(dir: string): boolean {
    let db: DatabaseSync | undefined;
    try {
      if (statSync(RunStore.dbPath(dir)).size === 0) return true;
      db = new DatabaseSync(RunStore.dbPath(dir), { readOnly: true });
      const row = db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number };
      return Number(row.n) === 0;
    } catch {
      return false; // unreadable: not known to be empty
    } finally {
      if (db?.isOpen) db.close();
    }
  }

  /**
   * Open (creating if needed) the run database in `dir`. A folder that cannot be created or
   * written, or a full disk, is a StoreError.
   */
  static open(dir: string, options: { readOnly?: boolean } = {}): RunStore {
    if (!options.readOnly) makeRunFolder(dir);
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(RunStore.dbPath(dir), { readOnly: options.readOnly ?? false });
      db.exec("PRAGMA busy_timeout = 5000");
      if (!options.readOnly) {
        db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
        db.exec(DDL);
        db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)").run(
          String(SCHEMA_VERSION),
        );
      }
    } catch (error) {
      if (db?.isOpen) db.close();
      throw (options.readOnly ? null : StoreError.from(error, dir)) ?? error;
    }
    const store = new RunStore(dir, db);
    const older = ["2", "3", "4"].includes(store.getMeta("schema_version") ?? "");
    if (!options.readOnly && older) store.addMissingColumns();
    const version = store.getMeta("schema_version");
    // Read-only (status, export), an older database reads as it is: missing columns read as null.
    const readable = options.readOnly === true && older;
    if (version !== null && Number(version) !== SCHEMA_VERSION && !readable) {
      db.close();
      throw new Error(
        `run database ${dir} has schema version ${version}; this bilevel reads ${SCHEMA_VERSION}`,
      );
    }
    return store;
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  /** An older database (2 to 4) gains the columns added since, empty (and the DDL's new tables); then it is the current version. */
  private addMissingColumns(): void {
    this.transaction(() => {
      for (const [table, column, type] of ADDED_COLUMNS) {
        if (!this.hasColumn(table, column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
      }
      this.setMeta("schema_version", String(SCHEMA_VERSION));
    });
  }

  private hasColumn(table: string, column: string): boolean {
    const columns = this.db.prepare(`PRAGMA table_info(${table})`).all() as Row[];
    return columns.some((c) => c.name === column);
  }

  /**
   * Run `fn` in one transaction (nested calls join the outer one): all of it is stored or
   * none. A full disk or an unwritable folder is a StoreError; other errors pass through.
   */
  transaction<T>(fn: () => T): T {
    if (this.db.isTransaction) return fn();
    try {
      this.db.exec("BEGIN IMMEDIATE");
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (error) {
      // After SQLITE_FULL (and IOERR, NOMEM) SQLite may have rolled back already.
      if (this.db.isTransaction) {
        try {
          this.db.exec("ROLLBACK");
        } catch {
          // The first error is the one to report.
        }
      }
      throw StoreError.from(error, this.dir) ?? error;
    }
  }

  // ---- meta and checkpoints

  getMeta(key: string): string | null {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as Row | undefined;
    return row ? String(row.value) : null;
  }

  setMeta(key: string, value: string): void {
    this.db
      .prepare(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
      )
      .run(key, value);
  }

  /** The run's config, with fields added to bilevel since it was stored at their defaults. */
  runConfig(): ResolvedRunConfig | null {
    const text = this.getMeta("run_config");
    return text === null ? null : withNewDefaults(JSON.parse(text) as ResolvedRunConfig);
  }

  hasCheckpoint(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM checkpoints WHERE name = ?").get(name) !== undefined;
  }

  checkpoint(name: string): void {
    this.db.prepare("INSERT OR IGNORE INTO checkpoints (name, created_at) VALUES (?, ?)").run(name, now());
  }

  /** How many checkpoints match a LIKE pattern (e.g. "iter:%:level15"). */
  countCheckpoints(pattern: string): number {
    const row = this.db
      .prepare("SELECT COUNT(*) AS n FROM checkpoints WHERE name LIKE ?")
      .get(pattern) as Row;
    return Number(row.n);
  }

  /** Iterations whose Level 1 finished, in order from the first (trained or not). */
  completedIterations(): number {
    let n = 0;
    while (this.hasCheckpoint(`iter:${n + 1}:done`)) n++;
    return n;
  }

  // ---- search configs

  addSearchConfig(
    iteration: number,
    cycle: number,
    source: string,
    config: SearchConfig,
    rationale: string,
  ): void {
    this.db
      .prepare(
        "INSERT INTO search_configs (iteration, cycle, source, config_json, rationale, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(iteration, cycle, source, json(config), rationale, now());
  }

  searchConfigs(): SearchConfigRow[] {
    return (this.db.prepare("SELECT * FROM search_configs ORDER BY id").all() as Row[]).map((r) => ({
      id: Number(r.id),
      iteration: Number(r.iteration),
      cycle: Number(r.cycle),
      source: String(r.source),
      config: parse<SearchConfig>(r.config_json),
      rationale: String(r.rationale),
    }));
  }

  // ---- proposals

  addProposal(p: Omit<ProposalRow, "id">): number {
    const r = this.db
      .prepare(
        `INSERT INTO proposals (iteration, attempt, source, mechanism_id, changes_json, rationale, config_json, status, reason, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        p.iteration,
        p.attempt,
        p.source,
        p.mechanismId,
        json(p.changes),
        p.rationale,
        p.config === null ? null : json(p.config),
        p.status,
        p.reason,
        now(),
      );
    return Number(r.lastInsertRowid);
  }

  setProposalStatus(id: number, status: string): void {
    this.db.prepare("UPDATE proposals SET status = ? WHERE id = ?").run(status, id);
  }

  proposals(iteration?: number): ProposalRow[] {
    const rows = (
      iteration === undefined
        ? this.db.prepare("SELECT * FROM proposals ORDER BY id").all()
        : this.db.prepare("SELECT * FROM proposals WHERE iteration = ? ORDER BY id").all(iteration)
    ) as Row[];
    return rows.map((r) => ({
      id: Number(r.id),
      iteration: Number(r.iteration),
      attempt: Number(r.attempt),
      source: String(r.source),
      mechanismId: r.mechanism_id === null ? null : String(r.mechanism_id),
      changes: parse<Change[]>(r.changes_json),
      rationale: String(r.rationale),
      config: parseOrNull<Config>(r.config_json),
      status: String(r.status),
      reason: r.reason === null ? null : String(r.reason),
    }));
  }

  // ---- trials

  /** Store a trial; with `id`, under that number (a trial keeps the id it got when it started). */
  addTrial(t: Omit<TrialRow, "id"> & { readonly id?: number }): number {
    const r = this.db
      .prepare(
        `INSERT INTO trials (id, iteration, kind, proposal_id, seed, config_json, changes_json, status, val_bpb, kept, delta,
           result_json, message, duration_ms, description, created_at, git_commit)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        t.id ?? null,
        t.iteration,
        t.kind,
        t.proposalId,
        t.seed,
        json(t.config),
        json(t.changes),
        t.status,
        t.valBpb,
        t.kept ? 1 : 0,
        t.delta,
        t.result === null ? null : json(t.result),
        t.message,
        t.durationMs,
        t.description,
        now(),
        t.commit ?? null,
      );
    return Number(r.lastInsertRowid);
  }

  trials(): TrialRow[] {
    return (this.db.prepare("SELECT * FROM trials ORDER BY id").all() as Row[]).map((r) => ({
      id: Number(r.id),
      iteration: Number(r.iteration),
      kind: String(r.kind) as TrialKind,
      proposalId: numOrNull(r.proposal_id),
      seed: Number(r.seed),
      config: parse<Config>(r.config_json),
      changes: parse<Change[]>(r.changes_json),
      status: String(r.status) as TrialStatus,
      valBpb: numOrNull(r.val_bpb),
      kept: Number(r.kept) === 1,
      delta: numOrNull(r.delta),
      result: parseOrNull<Json>(r.result_json),
      message: String(r.message),
      durationMs: Number(r.duration_ms),
      description: String(r.description),
      commit: r.git_commit === null || r.git_commit === undefined ? null : String(r.git_commit),
    }));
  }

  // ---- jobs: trials in flight

  /** Insert or replace the job of a trial (a rerun counts one more attempt). */
  putJob(j: Omit<JobRow, "attempts">): void {
    this.db
      .prepare(
        `INSERT INTO jobs (trial_id, iteration, kind, proposal_id, seed, description, executor, slot, job_id, work_dir,
           state, attempts, submitted_ms, started_ms, ended_ms, recorded_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
         ON CONFLICT (trial_id) DO UPDATE SET executor = excluded.executor, slot = excluded.slot,
           job_id = excluded.job_id, work_dir = excluded.work_dir, state = excluded.state,
           attempts = jobs.attempts + 1, submitted_ms = excluded.submitted_ms, started_ms = NULL,
           ended_ms = NULL, recorded_ms = NULL`,
      )
      .run(
        j.trialId,
        j.iteration,
        j.kind,
        j.proposalId,
        j.seed,
        j.description,
        j.executor,
        j.slot,
        j.jobId,
        j.workDir,
        j.state,
        j.submittedMs,
        j.startedMs,
        j.endedMs,
        j.recordedMs,
      );
  }

  /** Record what the executor says about a trial's job (times only move forward from null). */
  updateJob(
    trialId: number,
    change: { state?: JobState; jobId?: string; startedMs?: number; endedMs?: number; recordedMs?: number },
  ): void {
    this.db
      .prepare(
        `UPDATE jobs SET state = COALESCE(?, state), job_id = COALESCE(?, job_id),
           started_ms = COALESCE(started_ms, ?), ended_ms = COALESCE(ended_ms, ?),
           recorded_ms = COALESCE(recorded_ms, ?) WHERE trial_id = ?`,
      )
      .run(
        change.state ?? null,
        change.jobId ?? null,
        change.startedMs ?? null,
        change.endedMs ?? null,
        change.recordedMs ?? null,
        trialId,
      );
  }

  /** Every job, by trial id; `unfinished`: those without a stored trial (in flight or cancelled when the run last stopped). */
  jobs(options: { unfinished?: boolean } = {}): JobRow[] {
    if (!this.hasTable("jobs")) return []; // an older database opened read-only
    const where = options.unfinished ? "WHERE state <> 'done'" : "";
    return (this.db.prepare(`SELECT * FROM jobs ${where} ORDER BY trial_id`).all() as Row[]).map((r) => ({
      trialId: Number(r.trial_id),
      iteration: Number(r.iteration),
      kind: String(r.kind) as TrialKind,
      proposalId: numOrNull(r.proposal_id),
      seed: Number(r.seed),
      description: String(r.description),
      executor: String(r.executor),
      slot: Number(r.slot),
      jobId: r.job_id === null ? null : String(r.job_id),
      workDir: String(r.work_dir),
      state: String(r.state) as JobState,
      attempts: Number(r.attempts),
      submittedMs: Number(r.submitted_ms),
      startedMs: numOrNull(r.started_ms),
      endedMs: numOrNull(r.ended_ms),
      recordedMs: numOrNull(r.recorded_ms),
    }));
  }

  private hasTable(name: string): boolean {
    return (
      this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined
    );
  }

  // ---- LLM exchanges

  addExchange(e: ExchangeInput): number {
    const r = this.db
      .prepare(
        `INSERT INTO llm_exchanges (iteration, purpose, model, messages_json, reply, error, prompt_tokens, completion_tokens,
           latency_ms, created_at, error_code, finish_reason, reasoning, reasoning_tokens, mode)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.iteration,
        e.purpose,
        e.model,
        json(e.messages),
        e.reply,
        e.error,
        e.promptTokens,
        e.completionTokens,
        e.latencyMs,
        now(),
        e.errorCode ?? null,
        e.finishReason ?? null,
        e.reasoning ?? null,
        e.reasoningTokens ?? null,
        e.mode ?? null,
      );
    return Number(r.lastInsertRowid);
  }

  /** LLM use per purpose and iteration (tokens as the server reported them; none counts 0). */
  llmUsage(): LlmUsageRow[] {
    const rows = this.db
      .prepare(
        `SELECT purpose, iteration, COUNT(*) AS exchanges, COUNT(error) AS failed,
           COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion,
           ${this.hasColumn("llm_exchanges", "reasoning_tokens") ? "COALESCE(SUM(reasoning_tokens), 0)" : "0"} AS reasoning,
           COALESCE(SUM(latency_ms), 0) AS latency
         FROM llm_exchanges GROUP BY purpose, iteration ORDER BY iteration, purpose`,
      )
      .all() as Row[];
    return rows.map((r) => ({
      purpose: String(r.purpose),
      iteration: Number(r.iteration),
      exchanges: Number(r.exchanges),
      failed: Number(r.failed),
      promptTokens: Number(r.prompt),
      completionTokens: Number(r.completion),
      reasoningTokens: Number(r.reasoning),
      latencyMs: Number(r.latency),
    }));
  }

  /** Tokens the run has spent on the LLM so far (prompt + completion; reasoning is part of completion). */
  llmTokensUsed(): number {
    const row = this.db
      .prepare(
        "SELECT COALESCE(SUM(prompt_tokens), 0) + COALESCE(SUM(completion_tokens), 0) AS used FROM llm_exchanges",
      )
      .get() as Row;
    return Number(row.used);
  }

  /** When each exchange ended, what for and whether it failed, without its messages (cheap). */
  exchangeTimes(): {
    iteration: number;
    purpose: string;
    latencyMs: number;
    createdAt: string;
    error: string | null;
  }[] {
    const rows = this.db
      .prepare("SELECT iteration, purpose, latency_ms, created_at, error FROM llm_exchanges ORDER BY id")
      .all() as Row[];
    return rows.map((r) => ({
      iteration: Number(r.iteration),
      purpose: String(r.purpose),
      latencyMs: Number(r.latency_ms),
      createdAt: String(r.created_at),
      error: r.error === null ? null : String(r.error),
    }));
  }

  /** Every exchange; `createdAt` is when it was stored, as it ended. */
  exchanges(): (ExchangeInput & { id: number; createdAt: string })[] {
    return (this.db.prepare("SELECT * FROM llm_exchanges ORDER BY id").all() as Row[]).map((r) => ({
      id: Number(r.id),
      createdAt: String(r.created_at),
      iteration: Number(r.iteration),
      purpose: String(r.purpose),
      model: String(r.model),
      messages: parse<Json>(r.messages_json),
      reply: r.reply === null ? null : String(r.reply),
      error: r.error === null ? null : String(r.error),
      promptTokens: numOrNull(r.prompt_tokens),
      completionTokens: numOrNull(r.completion_tokens),
      latencyMs: Number(r.latency_ms),
      errorCode: strOrNull(r.error_code),
      finishReason: strOrNull(r.finish_reason),
      reasoning: strOrNull(r.reasoning),
      reasoningTokens: numOrNull(r.reasoning_tokens),
      mode: strOrNull(r.mode),
    }));
  }

  // ---- mechanisms

  upsertMechanism(m: MechanismRow): void {
    this.db
      .prepare(
        `INSERT INTO mechanisms (id, name, origin, status, source, js, source_hash, js_hash, manifest_json, validation_json,
           state_json, capabilities_json, reason, created_iteration, activated_iteration, design_name, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, js = excluded.js, source_hash = excluded.source_hash,
           js_hash = excluded.js_hash, manifest_json = excluded.manifest_json, validation_json = excluded.validation_json,
           state_json = excluded.state_json, capabilities_json = excluded.capabilities_json, reason = excluded.reason,
           activated_iteration = excluded.activated_iteration, updated_at = excluded.updated_at`,
      )
      .run(
        m.id,
        m.name,
        m.origin,
        m.status,
        m.source,
        m.js,
        m.sourceHash,
        m.jsHash,
        m.manifest === null ? null : json(m.manifest),
        m.validation === null ? null : json(m.validation),
        json(m.state),
        json(m.capabilities),
        m.reason,
        m.createdIteration,
        m.activatedIteration,
        m.designName,
        now(),
      );
  }

  setMechanismState(id: string, state: Json, capabilities: CapabilityState): void {
    this.db
      .prepare("UPDATE mechanisms SET state_json = ?, capabilities_json = ?, updated_at = ? WHERE id = ?")
      .run(json(state), json(capabilities), now(), id);
  }

  setMechanismStatus(
    id: string,
    status: MechanismStatus,
    reason: string | null,
    activatedIteration?: number,
  ): void {
    if (activatedIteration === undefined) {
      this.db
        .prepare("UPDATE mechanisms SET status = ?, reason = ?, updated_at = ? WHERE id = ?")
        .run(status, reason, now(), id);
    } else {
      this.db
        .prepare(
          "UPDATE mechanisms SET status = ?, reason = ?, activated_iteration = ?, updated_at = ? WHERE id = ?",
        )
        .run(status, reason, activatedIteration, now(), id);
    }
  }

  mechanisms(): MechanismRow[] {
    return (this.db.prepare("SELECT * FROM mechanisms ORDER BY rowid").all() as Row[]).map((r) => ({
      id: String(r.id),
      name: String(r.name),
      origin: String(r.origin) as MechanismOrigin,
      status: String(r.status) as MechanismStatus,
      source: String(r.source),
      js: r.js === null ? null : String(r.js),
      sourceHash: r.source_hash === null ? null : String(r.source_hash),
      jsHash: r.js_hash === null ? null : String(r.js_hash),
      manifest: parseOrNull<Manifest>(r.manifest_json),
      validation: parseOrNull<ValidationReport>(r.validation_json),
      state: parseOrNull<Json>(r.state_json),
      capabilities: parseOrNull<CapabilityState>(r.capabilities_json) ?? EMPTY_CAPABILITIES,
      reason: r.reason === null ? null : String(r.reason),
      createdIteration: Number(r.created_iteration),
      activatedIteration: numOrNull(r.activated_iteration),
      designName: r.design_name === null || r.design_name === undefined ? null : String(r.design_name),
    }));
  }

  // ---- ledger and events

  addLedger(e: Omit<LedgerRow, "id">): number {
    const r = this.db
      .prepare(
        `INSERT INTO ledger (iteration, mechanism_id, hook, outcome, detail_json, latency_ms, proposal_id, trial_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.iteration,
        e.mechanismId,
        e.hook,
        e.outcome,
        json(e.detail),
        e.latencyMs,
        e.proposalId,
        e.trialId,
        now(),
      );
    return Number(r.lastInsertRowid);
  }

  /**
   * Attach a trial to the ledger rows that shaped it: the calls about its proposal (suggest,
   * filter, observe) and, when an LLM wrote the proposal, the iteration's guide texts (they
   * were in its prompt; the offline proposer ignores them).
   */
  linkLedgerToTrial(
    trialId: number,
    proposalId: number,
    iteration: number,
    guidesReachedProposer: boolean,
  ): void {
    this.db.prepare("UPDATE ledger SET trial_id = ? WHERE proposal_id = ?").run(trialId, proposalId);
    if (guidesReachedProposer) {
      this.db
        .prepare(
          "UPDATE ledger SET trial_id = ? WHERE iteration = ? AND hook = 'guide' AND outcome = 'guided'",
        )
        .run(trialId, iteration);
    }
  }

  ledger(): LedgerRow[] {
    return (this.db.prepare("SELECT * FROM ledger ORDER BY id").all() as Row[]).map((r) => ({
      id: Number(r.id),
      iteration: Number(r.iteration),
      mechanismId: String(r.mechanism_id),
      hook: String(r.hook) as HookName,
      outcome: String(r.outcome),
      detail: parse<Json>(r.detail_json),
      latencyMs: Number(r.latency_ms),
      proposalId: numOrNull(r.proposal_id),
      trialId: numOrNull(r.trial_id),
    }));
  }

  addEvent(iteration: number, level: EventLevel, kind: string, message: string, data: Json = {}): void {
    this.db
      .prepare(
        "INSERT INTO events (iteration, level, kind, message, data_json, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(iteration, level, kind, message, json(data), now());
  }

  events(): {
    iteration: number;
    level: EventLevel;
    kind: string;
    message: string;
    data: Json;
    createdAt: string;
  }[] {
    return (this.db.prepare("SELECT * FROM events ORDER BY id").all() as Row[]).map((r) => ({
      iteration: Number(r.iteration),
      level: String(r.level) as EventLevel,
      kind: String(r.kind),
      message: String(r.message),
      data: parse<Json>(r.data_json),
      createdAt: String(r.created_at),
    }));
  }

  /**
   * A cheap stamp that changes whenever the run records something (a trial, an event, a hook
   * call, an LLM exchange, a mechanism update, its status): `serve` polls it to push updates.
   */
  revision(): string {
    const row = this.db
      .prepare(
        `SELECT (SELECT coalesce(max(id), 0) FROM trials) || ':' || (SELECT coalesce(max(id), 0) FROM events)
           || ':' || (SELECT coalesce(max(id), 0) FROM ledger) || ':' || (SELECT coalesce(max(id), 0) FROM llm_exchanges)
           || ':' || (SELECT coalesce(max(updated_at), '') FROM mechanisms)
           || ':' || (SELECT coalesce(max(value), '') FROM meta WHERE key = 'status') AS stamp`,
      )
      .get() as Row | undefined;
    return String(row?.stamp ?? "");
  }

  /**
   * Karpathy's results.tsv (commit val_bpb memory_gb status description), the first column the trial
   * number; written whole from the store at a run's start and resume, so it then matches the store.
   */
  writeResultsTsv(): string {
    const file = path.join(this.dir, "results.tsv");
    writeFileSync(file, `${[RESULTS_HEADER, ...this.trials().map(resultsRow)].join("\n")}\n`);
    return file;
  }

  /** Append one trial's row (after its transaction committed), so `tail -f results.tsv` follows the run. */
  appendResult(trial: TrialRow): void {
    appendFileSync(path.join(this.dir, "results.tsv"), `${resultsRow(trial)}\n`);
  }
}

const RESULTS_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription";

/**
 * One results.tsv row in Karpathy's columns: the short commit of the script that ran (under git;
 * else the trial number everything else uses), val_bpb, memory, keep/discard/crash (a baseline
 * that trained is `keep`, as in autoresearch), and the description with a failure's reason.
 */
export function resultsRow(t: TrialRow): string {
  const clean = (s: string) => s.replace(/[\t\r\n]+/g, " ");
  const result = t.result as { peak_memory_mb?: number } | null;
  const memGb = result && typeof result.peak_memory_mb === "number" ? result.peak_memory_mb / 1024 : 0;
  const status = t.status !== "ok" ? "crash" : t.kept || t.kind === "baseline" ? "keep" : "discard";
  const description =
    t.kind === "baseline" ? t.description.replace(/^baseline run 1 \([^)]*\)$/, "baseline") : t.description;
  return [
    t.commit ? t.commit.slice(0, 7) : `trial-${t.id}`,
    (t.valBpb ?? 0).toFixed(6),
    memGb.toFixed(1),
    status,
    clean(t.status === "ok" ? description : `${description} (${t.status}: ${t.message})`),
  ].join("\t");
}
