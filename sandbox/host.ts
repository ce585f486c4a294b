// The Sandbox: the host's handle on the supervised child and on the compiler process. It serialises
// requests, enforces a deadline on every one (compile, load, call), SIGKILLs and restarts the child
// (or the compiler) on a missed deadline or a crash, reloads the healthy mechanisms into the new
// child, and quarantines the offender. Public methods never throw for anything a mechanism does.

import type { HookName, Json } from "../mechanism-api/index.d.ts";
import { EMPTY_CAPABILITIES } from "./capabilities/state.ts";
import {
  type Failure,
  type Item,
  isFailure,
  type Reply,
  type RequestBody,
  SandboxChild,
} from "./child-process.ts";
import { compilerCacheDir } from "./compiler-blob.ts";
import { Compiler } from "./compiler-process.ts";
import { timeoutMessage } from "./fault-messages.ts";
import { defaultPolicy } from "./policy.ts";
import {
  type CallTexts,
  type ChildCallOutcome,
  callRequest,
  isResponse,
  longestLine,
  MAX_LINE_CHARS,
  type TextRequest,
  toWireBatch,
  withTexts,
} from "./protocol.ts";
import { compiledMechanismSchema } from "./schemas.ts";
import type {
  CapabilityState,
  CompiledMechanism,
  CompileOutcome,
  DryRunTrace,
  HookBatch,
  HookCall,
  HookOutcome,
  HookResult,
  SandboxError,
  SandboxPolicy,
  SandboxStage,
  ValidationReport,
} from "./types.ts";
import { validator } from "./validation.ts";

/** Process-level limits (not part of the run policy). */
export interface SandboxOptions {
  /** RSS cap of the child process in MB (its isolates), enforced by a watchdog. Default 2048. */
  readonly childMemoryMb?: number;
  /** V8 heap cap in MB of the child's own Node heap, and of the compiler process's. Default 1024. */
  readonly childHeapMb?: number;
  /** Deadline for one compile in ms (the compiler process's start is not counted). Default 30000. */
  readonly compileTimeoutMs?: number;
  /** Largest mechanism source accepted, in bytes. Default 512 KiB. */
  readonly maxSourceBytes?: number;
  /** Deadline for the child to come up, in ms. Default 20000. */
  readonly startTimeoutMs?: number;
  /**
   * Start the compiler process with the child, in parallel (with lazyStart: the child with the first
   * compile), not on the first compile: for callers that compile. Default false.
   */
  readonly preloadCompiler?: boolean;
  /**
   * Folder of the compiler's startup snapshot, built there on first need (sandbox/compiler-blob.ts);
   * null: the compiler starts without one (slower, same answers). Default $BILEVEL_CACHE/compiler,
   * else .bilevel/cache/compiler in the checkout.
   */
  readonly compilerCacheDir?: string | null;
  /** Start the child with the first request that needs it, not in start(). Default false. */
  readonly lazyStart?: boolean;
  /**
   * The module with the filter chain's rule (a ChainRuleModule: runtime/level1/filter-chain.ts's
   * FILTER_CHAIN_RULE), for callBatch's chains. Without it a chain is not batched (null).
   */
  readonly chainRule?: string;
}

/** The largest mechanism source a Sandbox accepts unless its options say otherwise. */
export const DEFAULT_MAX_SOURCE_BYTES = 512 * 1024;

/** How many compiles' source maps a sandbox keeps for their loads (each is a few kB). */
const MAX_KEPT_MAPPINGS = 256;

const HOOK_ORDER: readonly HookName[] = ["init", "guide", "suggest", "filter", "observe"];

const isCompiledMechanism = validator<CompiledMechanism>(compiledMechanismSchema);

function failureError(stage: SandboxStage, failure: Failure, hookTimeoutMs?: number): SandboxError {
  const code =
    failure.failure === "timeout" ? "timeout" : failure.failure === "memory" ? "memory" : "crashed";
  // A hook that missed the host's deadline: which hook and which limit, then what the host did.
  if (code === "timeout" && hookTimeoutMs !== undefined && stage !== "compile" && stage !== "lint") {
    const message = `${timeoutMessage(stage, hookTimeoutMs)}; the sandbox child gave ${failure.detail} and was restarted`;
    return { stage, code, message };
  }
  return { stage, code, message: failure.detail };
}

export class Sandbox {
  readonly policy: SandboxPolicy;
  private readonly options: Required<SandboxOptions>;
  private child: SandboxChild | null = null;
  private readonly compiler: Compiler;
  /**
   * Source maps' mappings by mappingsKey (null: the JS is not what its source compiles to), from
   * the compiler process, sent with each load: the child then places a runtime error without
   * loading TypeScript, which could take longer than the hook's deadline. The latest compiles';
   * a loaded mechanism keeps its own in `loaded` (a restart reloads it with them).
   */
  private readonly mappings = new Map<string, string | null>();
  private readonly loaded = new Map<string, Loaded>();
  private readonly quarantined = new Map<string, SandboxError>();
  private lock: Promise<unknown> = Promise.resolve();
  private restartCount = 0;
  private closed = false;
  private validations = 0;
  /** Timings of the last compile, split by stage (for validate's report). */
  private lastCompileSplit = { compileMs: 0, lintMs: 0 };

  private constructor(policy: SandboxPolicy, options: SandboxOptions) {
    this.policy = policy;
    this.options = {
      childMemoryMb: options.childMemoryMb ?? 2048,
      childHeapMb: options.childHeapMb ?? 1024,
      compileTimeoutMs: options.compileTimeoutMs ?? 30000,
      maxSourceBytes: options.maxSourceBytes ?? DEFAULT_MAX_SOURCE_BYTES,
      startTimeoutMs: options.startTimeoutMs ?? 20000,
      preloadCompiler: options.preloadCompiler ?? false,
      lazyStart: options.lazyStart ?? false,
      chainRule: options.chainRule ?? "",
      compilerCacheDir:
        options.compilerCacheDir === undefined ? compilerCacheDir() : options.compilerCacheDir,
    };
    this.compiler = new Compiler({
      heapMb: this.options.childHeapMb,
      startTimeoutMs: this.options.startTimeoutMs,
      cacheDir: this.options.compilerCacheDir,
      notice: (line) => process.stderr.write(`bilevel: ${line}\n`),
    });
  }

  /**
   * Spawn the supervised child (with lazyStart: at the first request). Throws only if the child
   * cannot start at all (or the policy is invalid); a lazy start's failure is that request's.
   */
  static async start(policy: Partial<SandboxPolicy> = {}, options: SandboxOptions = {}): Promise<Sandbox> {
    const sandbox = new Sandbox(defaultPolicy(policy), options);
    if (sandbox.options.lazyStart) return sandbox;
    // The two processes start in parallel (each is hundreds of milliseconds of Node and modules).
    if (sandbox.options.preloadCompiler) sandbox.compiler.start();
    try {
      sandbox.child = await sandbox.spawnChild();
    } catch (e) {
      await sandbox.compiler.close();
      throw e;
    }
    return sandbox;
  }

  /**
   * Start the processes a lazy sandbox would start with its first request (the child, and the
   * compiler with preloadCompiler) now, in the background: a compile does not wait for the child. A
   * failure to start is the first request's that needs the process.
   */
  prestart(): void {
    if (this.options.preloadCompiler) this.compiler.start();
    void this.exclusive(() => this.ensureChild());
  }

  /** How many times the child or the compiler process was replaced after a kill or a crash. */
  get restarts(): number {
    return this.restartCount + this.compiler.restarts;
  }

  /** How the compiler process last started: from its snapshot or plainly (null: not yet). */
  get compilerStartedFrom(): "snapshot" | "plain" | null {
    return this.compiler.startedFrom;
  }

  /** The child's pid (for tests and diagnostics). */
  get childPid(): number | undefined {
    return this.child?.pid;
  }

  quarantineReason(id: string): SandboxError | null {
    return this.quarantined.get(id) ?? null;
  }

  async compile(source: string, _fileName?: string): Promise<CompileOutcome> {
    const t0 = performance.now();
    const fail = (error: SandboxError): CompileOutcome => ({
      ok: false,
      errors: [error],
      durationMs: performance.now() - t0,
    });
    if (typeof source !== "string")
      return fail({ stage: "compile", code: "syntax-error", message: "the source is not text" });
    const bytes = Buffer.byteLength(source, "utf8");
    if (bytes > this.options.maxSourceBytes) {
      return fail({
        stage: "compile",
        code: "syntax-error",
        message: `the source is ${bytes} bytes, over the ${this.options.maxSourceBytes}-byte limit`,
      });
    }
    // A caller that compiles and then loads: its lazy child starts now, alongside the compile.
    if (this.options.lazyStart && this.options.preloadCompiler && this.child === null && !this.closed) {
      void this.exclusive(() => this.ensureChild());
    }
    const compiled = await this.compiler.compile(source, this.options.compileTimeoutMs);
    if ("failure" in compiled) {
      const error = failureError("compile", compiled);
      return fail(
        error.code === "timeout"
          ? { ...error, message: `the compiler did not finish within ${this.options.compileTimeoutMs} ms` }
          : error,
      );
    }
    const { result, mappings } = compiled;
    this.lastCompileSplit = { compileMs: result.compileMs, lintMs: result.lintMs };
    if (result.ok) this.keepMappings(mappingsKey(result.mechanism), mappings);
    const durationMs = performance.now() - t0;
    return result.ok
      ? { ok: true, mechanism: result.mechanism, durationMs }
      : { ok: false, errors: result.errors, durationMs };
  }

  async load(
    id: string,
    mechanism: CompiledMechanism,
  ): Promise<{ ok: true } | { ok: false; error: SandboxError }> {
    if (typeof id !== "string" || id.length === 0 || id.length > 200) {
      return {
        ok: false,
        error: { stage: "load", code: "invalid-manifest", message: "invalid mechanism id" },
      };
    }
    if (!isCompiledMechanism(mechanism)) {
      return {
        ok: false,
        error: {
          stage: "load",
          code: "invalid-manifest",
          message: `not a compiled mechanism: ${isCompiledMechanism.explain()}`,
        },
      };
    }
    if (!this.mappings.has(mappingsKey(mechanism))) {
      const mappings = await this.compiler.mappings(
        mechanism.source,
        mechanism.js,
        this.options.compileTimeoutMs,
      );
      // A failure: none sent, and the child makes them itself if an error needs them.
      if (mappings === null || typeof mappings === "string")
        this.keepMappings(mappingsKey(mechanism), mappings);
    }
    return this.exclusive(async () => {
      this.quarantined.delete(id);
      this.loaded.delete(id);
      const entry: Loaded = { mechanism, mappings: this.mappings.get(mappingsKey(mechanism)) };
      const reply = await this.send(loadRequest(id, entry), this.loadDeadline());
      if (isFailure(reply)) return { ok: false, error: failureError("load", reply) };
      if (reply.op !== "load")
        return { ok: false, error: { stage: "load", code: "crashed", message: unexpected(reply) } };
      if (reply.error) return { ok: false, error: reply.error };
      this.loaded.set(id, entry);
      return { ok: true };
    });
  }

  async call(call: HookCall): Promise<HookOutcome> {
    const t0 = performance.now();
    const stage: SandboxStage = HOOK_ORDER.includes(call?.hook) ? call.hook : "load";
    const failed = (error: SandboxError): HookOutcome => ({
      ok: false,
      error,
      durationMs: performance.now() - t0,
    });
    // The child validates the call (ajv) on receipt; here only what decides whether to send it.
    if (
      call === null ||
      typeof call !== "object" ||
      typeof call.mechanismId !== "string" ||
      typeof call.context !== "object" ||
      call.context === null
    ) {
      return failed({ stage, code: "invalid-state", message: "invalid hook call" });
    }
    const id = call.mechanismId;
    const known = this.quarantined.get(id);
    if (known) {
      return failed({
        stage,
        code: "quarantined",
        message: `quarantined after ${known.stage}/${known.code}: ${known.message}`,
      });
    }
    if (!this.loaded.has(id))
      return failed({ stage, code: "crashed", message: `mechanism "${id}" is not loaded` });
    let request: TextRequest;
    try {
      request = callRequest(call);
    } catch {
      return failed({ stage, code: "invalid-state", message: "the hook call's data is not JSON" });
    }
    if (
      requestBytes(request.head, request.texts) > this.policy.maxJsonBytes ||
      longestLine(request.head, request.texts) >= MAX_LINE_CHARS
    ) {
      return failed({
        stage,
        code: "invalid-state",
        message: `the hook call's data exceeds ${this.policy.maxJsonBytes} bytes`,
      });
    }
    return this.exclusive(async () => {
      if (!this.loaded.has(id))
        return failed({ stage, code: "crashed", message: `mechanism "${id}" is not loaded` });
      const reply = await this.send(request, this.callDeadline());
      let error: SandboxError;
      if (isFailure(reply)) error = failureError(stage, reply, this.policy.hookTimeoutMs);
      else if (reply.op === "invalid") {
        // The call's data failed the child's checks, made before any guest code runs: the caller's
        // mistake, not the mechanism's. (A failure after guest code ran comes back as an outcome.)
        return failed({ stage, code: "invalid-state", message: reply.message });
      } else if (reply.op !== "call") error = { stage, code: "crashed", message: unexpected(reply) };
      else if (!reply.outcome.ok) error = reply.outcome.error;
      else {
        return succeeded(reply.outcome, call.capabilities, performance.now() - t0);
      }
      await this.quarantine(id, error);
      return failed(error);
    });
  }

  /**
   * Call one hook on several mechanisms in one round trip (see HookBatch): one outcome per call that
   * ran, in order, each as call() would give it (a fault quarantines that mechanism only). Fewer
   * outcomes than calls when a chain's filter rejected, or when the child died during a call: that
   * call's outcome is the failure, and the caller sends the calls after it again. null: the batch
   * cannot go as one (a call the host refuses before sending, data the child refuses before any
   * guest code runs, a line too long); the caller then calls one by one, which reports each problem
   * against its own call.
   */
  async callBatch(batch: HookBatch): Promise<HookOutcome[] | null> {
    const t0 = performance.now();
    const request = this.batchRequest(batch);
    if (request === null) return null;
    return this.exclusive(async () => {
      if (!batch.calls.every((c) => this.loaded.has(c.mechanismId))) return null;
      const items: { item: Item; at: number }[] = [];
      const reply = await this.send(request, this.callDeadline(), (item) =>
        items.push({ item, at: performance.now() }),
      );
      if (!isFailure(reply) && reply.op === "invalid" && items.length === 0) return null;
      return this.batchOutcomes(batch, items, reply, t0);
    });
  }

  /** The batch's request, or null if the host refuses it before sending (as call() would refuse a call). */
  private batchRequest(batch: HookBatch): TextRequest | null {
    if (batch === null || typeof batch !== "object" || !Array.isArray(batch.calls)) return null;
    if (batch.calls.length === 0) return null;
    if (batch.chain !== undefined && (batch.hook !== "filter" || this.options.chainRule === "")) return null;
    for (const c of batch.calls) {
      if (typeof c?.mechanismId !== "string" || this.quarantined.has(c.mechanismId)) return null;
      if (!this.loaded.has(c.mechanismId)) return null;
    }
    try {
      const { calls, paramsJson, historyJson, ...shared } = toWireBatch(batch);
      const texts = { paramsJson, historyJson };
      // Each call is measured as its own request would be: the shared part plus its own data.
      const head = JSON.stringify({ op: "batch", ...shared });
      const parts = calls.map((c) => JSON.stringify(c));
      const headBytes = requestBytes(head, texts);
      if (parts.some((p) => headBytes + Buffer.byteLength(p, "utf8") > this.policy.maxJsonBytes)) return null;
      const withCalls = `${head.slice(0, -1)},"calls":[${parts.join(",")}]}`;
      return longestLine(withCalls, texts) < MAX_LINE_CHARS ? { head: withCalls, texts } : null;
    } catch {
      return null;
    }
  }

  /** Turn a batch's items (and how it ended) into outcomes; quarantine the mechanisms that faulted. */
  private async batchOutcomes(
    batch: HookBatch,
    items: readonly { item: Item; at: number }[],
    reply: Reply,
    t0: number,
  ): Promise<HookOutcome[]> {
    const outcomes: HookOutcome[] = [];
    // Items must come in order, one per call; anything else is the child's failure at that call.
    const inOrder = items.findIndex(({ item }, i) => item.index !== i || i >= batch.calls.length);
    const ran = inOrder < 0 ? items.length : inOrder;
    const end = ran > 0 ? items[ran - 1]!.at : t0;
    const childMs = items.slice(0, ran).reduce((sum, { item }) => sum + item.ms, 0);
    // Each call's latency: its time in the child plus an equal share of the round trip's transport.
    const share = ran > 0 ? Math.max(0, end - t0 - childMs) / ran : 0;
    for (const { item } of items.slice(0, ran)) {
      const call = batch.calls[item.index]!;
      const o = item.outcome;
      const durationMs = item.ms + share;
      if (o.ok) outcomes.push(succeeded(o, call.capabilities, durationMs));
      else {
        await this.quarantine(call.mechanismId, o.error);
        outcomes.push({ ok: false, error: o.error, durationMs });
      }
    }
    const offender = this.batchOffender(batch, outcomes, reply, inOrder >= 0);
    if (offender) {
      await this.quarantine(batch.calls[ran]!.mechanismId, offender);
      outcomes.push({ ok: false, error: offender, durationMs: performance.now() - end });
    }
    return outcomes;
  }

  /** The failure of the call that was running when the batch broke off, or null if it did not. */
  private batchOffender(
    batch: HookBatch,
    outcomes: readonly HookOutcome[],
    reply: Reply,
    outOfOrder: boolean,
  ): SandboxError | null {
    const stage = batch.hook;
    const ran = outcomes.length;
    const last = outcomes[ran - 1];
    const rejected = batch.chain !== undefined && last?.ok === true && isReject(last.result);
    if (ran >= batch.calls.length) return null;
    if (outOfOrder)
      return { stage, code: "crashed", message: "the sandbox child answered a batch out of order" };
    if (rejected) return null;
    if (isFailure(reply)) return failureError(stage, reply, this.policy.hookTimeoutMs);
    // The child ended the batch early without a reason (not expected): the caller sends the rest again.
    if (reply.op === "batch" && reply.count === ran) return null;
    return { stage, code: "crashed", message: unexpected(reply) };
  }

  async unload(id: string): Promise<void> {
    await this.exclusive(async () => {
      const wasLoaded = this.loaded.delete(id);
      if (wasLoaded && this.child?.alive)
        await this.send({ op: "unload", mechanismId: id }, this.loadDeadline());
    });
  }

  async validate(source: string, trace: DryRunTrace, fileName?: string): Promise<ValidationReport> {
    const stages: { stage: SandboxStage; ok: boolean; durationMs: number; error?: SandboxError }[] = [];
    const report = (
      error: SandboxError | null,
      manifest: ValidationReport["manifest"],
      compiled: CompiledMechanism | null,
      errors?: readonly SandboxError[],
    ): ValidationReport => ({
      ok: error === null,
      manifest,
      stages,
      error,
      ...(errors ? { errors } : {}),
      compiled,
    });
    const compiled = await this.compile(source, fileName);
    if (!compiled.ok) {
      // The errors come in source order; each stage reports its own first one, and the stage that
      // failed first in the pipeline (compile before lint) is the report's error.
      const { errors } = compiled;
      const compileError = errors.find((e) => e.stage !== "lint");
      if (compileError === undefined) {
        const lintError = errors[0]!;
        stages.push({ stage: "compile", ok: true, durationMs: this.lastCompileSplit.compileMs });
        stages.push({ stage: "lint", ok: false, durationMs: this.lastCompileSplit.lintMs, error: lintError });
        return report(lintError, null, null, errors);
      }
      stages.push({ stage: "compile", ok: false, durationMs: compiled.durationMs, error: compileError });
      return report(compileError, null, null, errors);
    }
    const { mechanism } = compiled;
    const lintMs = this.lastCompileSplit.lintMs;
    stages.push({ stage: "compile", ok: true, durationMs: compiled.durationMs - lintMs });
    stages.push({ stage: "lint", ok: true, durationMs: lintMs });
    const id = `validate-${++this.validations}`;
    const tLoad = performance.now();
    const loaded = await this.load(id, mechanism);
    if (!loaded.ok) {
      stages.push({ stage: "load", ok: false, durationMs: performance.now() - tLoad, error: loaded.error });
      return report(loaded.error, mechanism.manifest, mechanism);
    }
    stages.push({ stage: "load", ok: true, durationMs: performance.now() - tLoad });
    let state: Json = {};
    let capabilities: HookCall["capabilities"] = EMPTY_CAPABILITIES;
    try {
      for (const hook of HOOK_ORDER) {
        if (!mechanism.manifest.hooks.includes(hook)) continue;
        const argument = hook === "filter" ? trace.proposal : hook === "observe" ? trace.trial : undefined;
        const outcome = await this.call({
          mechanismId: id,
          hook,
          context: trace.context,
          state,
          capabilities,
          ...(argument === undefined ? {} : { argument }),
        });
        if (!outcome.ok) {
          stages.push({ stage: hook, ok: false, durationMs: outcome.durationMs, error: outcome.error });
          return report(outcome.error, mechanism.manifest, mechanism);
        }
        stages.push({ stage: hook, ok: true, durationMs: outcome.durationMs });
        state = outcome.state;
        capabilities = outcome.capabilities;
      }
    } finally {
      await this.unload(id);
      this.quarantined.delete(id);
    }
    return report(null, mechanism.manifest, mechanism);
  }

  async close(): Promise<void> {
    await Promise.all([
      this.compiler.close(),
      this.exclusive(async () => {
        this.closed = true;
        this.loaded.clear();
        await this.child?.close();
        this.child = null;
      }),
    ]);
  }

  // ---- internals ----

  private callDeadline(): number {
    const t = this.policy.hookTimeoutMs;
    return t + Math.max(200, t);
  }

  private loadDeadline(): number {
    return this.callDeadline() + 2000;
  }

  /** Run `fn` after every earlier operation (one request in flight at a time). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => {});
    return run;
  }

  /** Send to a live child, replacing a dead one first (and reloading the healthy mechanisms). */
  private async send(
    body: RequestBody | TextRequest,
    deadlineMs: number,
    onItem?: (item: Item) => void,
  ): Promise<Reply> {
    if (this.closed) return { failure: "crashed", detail: "the sandbox is closed" };
    if (!this.child?.alive) {
      try {
        await this.restart();
      } catch (e) {
        return {
          failure: "crashed",
          detail: e instanceof Error ? e.message : "the sandbox child could not restart",
        };
      }
    }
    const child = this.child!;
    let reply: Reply;
    if ("texts" in body) {
      // The texts this child holds already are left out; it keeps what it accepts.
      const line = withTexts(body.head, child.heldTexts.leaveOut(body.texts));
      reply = await child.request(line, deadlineMs, onItem);
      child.heldTexts.settle(body.texts, !isFailure(reply) && reply.op !== "invalid");
    } else reply = await child.request(body, deadlineMs, onItem);
    if (isFailure(reply)) await child.exited;
    return reply;
  }

  private async spawnChild(): Promise<SandboxChild> {
    const starting = SandboxChild.start({
      policy: this.policy,
      memoryMb: this.options.childMemoryMb,
      heapMb: this.options.childHeapMb,
      startTimeoutMs: this.options.startTimeoutMs,
      watchdogIntervalMs: 50,
      chainRule: this.options.chainRule,
    });
    // The child is starting (for hundreds of milliseconds): the validators of its answers and of
    // loads are prepared now rather than when the first answer is waited for.
    isResponse.warm();
    isCompiledMechanism.warm();
    return starting;
  }

  private keepMappings(key: string, mappings: string | null): void {
    this.mappings.delete(key);
    this.mappings.set(key, mappings);
    // The latest ones (a Map keeps insertion order): a long run compiles many mechanisms.
    if (this.mappings.size > MAX_KEPT_MAPPINGS) this.mappings.delete(this.mappings.keys().next().value!);
  }

  /** Start the child if none runs (a failure is left to the request that needs it). */
  private async ensureChild(): Promise<void> {
    if (this.closed || this.child?.alive) return;
    await this.restart().catch(() => {});
  }

  private async restart(): Promise<void> {
    // No child yet: a lazy start's first spawn, not a restart.
    const first = this.child === null;
    this.child = await this.spawnChild();
    if (!first) this.restartCount++;
    for (const [id, entry] of [...this.loaded]) {
      const reply = await this.child.request(loadRequest(id, entry), this.loadDeadline());
      const error = isFailure(reply)
        ? failureError("load", reply)
        : reply.op === "load"
          ? reply.error
          : { stage: "load" as const, code: "crashed" as const, message: unexpected(reply) };
      if (error) {
        this.loaded.delete(id);
        this.quarantined.set(id, {
          ...error,
          message: `could not be reloaded after a sandbox restart: ${error.message}`,
        });
        if (!this.child.alive) {
          await this.child.exited;
          return this.restart();
        }
      }
    }
  }

  private async quarantine(id: string, error: SandboxError): Promise<void> {
    this.quarantined.set(id, error);
    if (this.loaded.delete(id) && this.child?.alive) {
      await this.child.request({ op: "unload", mechanismId: id }, this.loadDeadline());
    }
  }
}

/** A request's data as the policy's maxJsonBytes counts it: its JSON and both texts, unescaped. */
function requestBytes(head: string, texts: CallTexts): number {
  const bytes = (s: string) => Buffer.byteLength(s, "utf8");
  return bytes(head) + bytes(texts.paramsJson) + bytes(texts.historyJson);
}

/** A loaded mechanism, and the mappings it was loaded with (undefined: none, the child makes them). */
interface Loaded {
  readonly mechanism: CompiledMechanism;
  readonly mappings: string | null | undefined;
}

/** The child's load request, with the mechanism's mappings when there are. */
function loadRequest(id: string, { mechanism, mappings }: Loaded): RequestBody {
  return { op: "load", mechanismId: id, mechanism, ...(mappings === undefined ? {} : { mappings }) };
}

/**
 * What mappings are kept under: the source and its JS. The JS alone is not enough: sources that
 * differ only in types compile to the same JS with different mappings.
 */
function mappingsKey(mechanism: CompiledMechanism): string {
  return `${mechanism.sourceHash}:${mechanism.jsHash}`;
}

function isReject(result: HookResult): boolean {
  return result.hook === "filter" && result.value.verdict === "reject";
}

function unexpected(reply: Reply): string {
  return "op" in reply && reply.op === "invalid"
    ? `the sandbox child refused the request: ${reply.message}`
    : "unexpected reply from the sandbox child";
}

/** A call that ran to completion, as the caller gets it (the child sends no capabilities when they did not change). */
function succeeded(
  o: Extract<ChildCallOutcome, { ok: true }>,
  capabilities: CapabilityState,
  durationMs: number,
): HookOutcome {
  return {
    ok: true,
    result: o.result,
    state: o.state as Json,
    capabilities: o.capabilities ?? capabilities,
    logs: o.logs,
    droppedLogLines: o.droppedLogLines,
    capabilityCalls: o.capabilityCalls,
    durationMs,
  };
}
