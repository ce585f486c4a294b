// Child side: one isolate per loaded mechanism, a fresh context per hook call (a few are built
// ahead in the background, see PREPARED_CONTEXTS), capabilities behind a single ivm.Callback.
import ivm from "isolated-vm";
import type { CapabilityName, HookName, ParamSpec } from "../mechanism-api/index.d.ts";
import { type CapabilitySession, invokeCapability } from "./capabilities/index.ts";
import { timeoutMessage } from "./fault-messages.ts";
import { BOOTSTRAP_FILE, FIXED_NOW, GUEST_BOOTSTRAP, GUEST_FILE, wrapMechanismJs } from "./guest.ts";
import { sha256 } from "./hash.ts";
import { CALL_MEMORY_SLACK_MB, MemoryWatchdog } from "./memory-watchdog.ts";
import {
  type CallTexts,
  type ChildCallOutcome,
  InvalidRequest,
  isHistory,
  isHookResult,
  isParamList,
  type TextOrHeld,
  type WireCall,
} from "./protocol.ts";
import { callSeed, sfc32 } from "./rng.ts";
import { sanitize } from "./sanitize.ts";
import { originalPosition } from "./sourcemap.ts";
import type { CompiledMechanism, HookResult, SandboxError, SandboxPolicy, SandboxStage } from "./types.ts";
import { jsonDepth } from "./validation.ts";

const MAX_DEPTH = 64;
const MAX_LOG_CHARS = 2000;
/**
 * Fresh contexts kept built ahead per mechanism. Building one takes ~0.4 ms of CPU and, off the
 * main thread on a busy machine, often over a millisecond of wall time, holding the isolate: with
 * one in reserve, calls 1 ms apart found one ready 86-95% of the time instead of 77-80% (in-process:
 * 80-93% instead of 20%). Each is used by one call; none has run guest code before it. Each holds
 * ~0.2 MB of its isolate's heap (isolateMemoryMb counts it).
 */
const PREPARED_CONTEXTS = 2;

/** The guest's entry point (GUEST_BOOTSTRAP's __bilevel_invoke): the call's input in, its outcome's JSON out. */
type GuestInvoke = (
  head: string,
  params: string,
  history: string,
  argument: string | null,
  warm?: boolean,
) => string;

/** A context for one call: the bootstrap and the mechanism's script have run in it, no hook has. */
interface Fresh {
  readonly context: ivm.Context;
  /** Its entry point, called through this Reference: nothing is compiled per call. */
  readonly invoke: ivm.Reference<GuestInvoke>;
}

interface Loaded {
  readonly id: string;
  readonly compiled: CompiledMechanism;
  readonly isolate: ivm.Isolate;
  /** GUEST_BOOTSTRAP, compiled once per isolate and run in each context. */
  readonly bootstrap: ivm.Script;
  readonly script: ivm.Script;
  /** Contexts built ahead, each for one call (see PREPARED_CONTEXTS). */
  readonly prepared: Fresh[];
  /**
   * The last call's input (see warmInput): a context built ahead runs the bootstrap's own path on
   * it (see GUEST_BOOTSTRAP's STAND_IN), so that the next call finds that path warm. Host data
   * only; no mechanism code runs in a warm-up.
   */
  warmArgs: readonly [string, string, string, string | null] | null;
  /** The context being built now, if any (one at a time per mechanism). */
  preparing: Promise<void> | null;
  /** Source-map mappings: from the host's compile, or computed on the first error that needs a position. */
  mappings?: string | null;
}

/** A call's data once checked (Runner.checkCall): its search space, and its texts as sent or held. */
export interface CheckedCall extends CallTexts {
  readonly params: ParamSpec[];
}

interface Active {
  readonly session: CapabilitySession;
  readonly logs: string[];
  dropped: number;
  fault: { code: SandboxError["code"]; message: string; line?: number; column?: number } | null;
}

export class Runner {
  private readonly policy: SandboxPolicy;
  private readonly loaded = new Map<string, Loaded>();
  private active: Active | null = null;
  private readonly callback: ivm.Callback;
  /** The last validated search space and history strings: they rarely change between calls. */
  private paramsCache: { json: string; value: ParamSpec[] } | null = null;
  private historyCache: string | null = null;
  private readonly watchdog = new MemoryWatchdog();
  private readonly bootstrapArgs: unknown[];
  private warmUps = 0;

  constructor(policy: SandboxPolicy) {
    this.policy = policy;
    this.callback = new ivm.Callback((op: unknown, args: unknown) => this.dispatch(op, args));
    this.bootstrapArgs = [this.callback, FIXED_NOW, policy.maxJsonBytes, MAX_DEPTH];
  }

  /** Resolves once guest code can run guarded (the memory watchdog is up). */
  get ready(): Promise<void> {
    return this.watchdog.ready;
  }

  /** Synchronous guest code, with the process's memory growth bounded (see memory-watchdog.ts). */
  private guarded<T>(fn: () => T): T {
    return this.watchdog.guard(this.policy.isolateMemoryMb + CALL_MEMORY_SLACK_MB, fn);
  }

  /** The guest's one way out. Runs synchronously inside a hook call; never throws. */
  private dispatch(op: unknown, args: unknown): string {
    const active = this.active;
    if (!active) return '{"ok":false,"message":"no hook call is active"}';
    if (op === "at") {
      // Where the guest called the capability that faulted (its compiled-JS position), sent right after.
      const fault = active.fault;
      if (fault?.code.startsWith("capability") && fault.line === undefined)
        Object.assign(fault, guestPosition(args));
      return '{"ok":true,"value":null}';
    }
    if (active.fault) return JSON.stringify({ ok: false, message: active.fault.message });
    if (op === "log") {
      if (active.logs.length < this.policy.maxLogLines) {
        active.logs.push(typeof args === "string" ? args.slice(0, MAX_LOG_CHARS) : "(not a string)");
      } else {
        active.dropped++;
      }
      return '{"ok":true,"value":null}';
    }
    if (op === "fault") {
      // The guest refused an allocation whose memory would escape the isolate's limit: sticky.
      active.fault = { code: "memory", message: guestFaultMessage(args) };
      return JSON.stringify({ ok: false, message: active.fault.message });
    }
    const result = invokeCapability(active.session, op, args);
    if (!result.ok) {
      // Sticky: the hook call fails with this error even if the guest catches the exception.
      active.fault = { code: result.code, message: capabilityMessage(op, result, this.policy) };
      return JSON.stringify({ ok: false, message: result.message });
    }
    return JSON.stringify({ ok: true, value: result.value });
  }

  /** `mappings`: the source map's, when the host has them (see mappingsFor); otherwise made when needed. */
  async load(
    id: string,
    compiled: CompiledMechanism,
    mappings?: string | null,
  ): Promise<SandboxError | null> {
    await this.unload(id);
    const denied = compiled.manifest.capabilities.filter((c) => !this.policy.grantedCapabilities.includes(c));
    if (denied.length > 0) {
      return err("load", "capability-denied", `the run's policy does not grant: ${denied.join(", ")}`);
    }
    if (sha256(compiled.js) !== compiled.jsHash) {
      return err("load", "invalid-manifest", "the compiled JavaScript does not match its hash");
    }
    const isolate = new ivm.Isolate({ memoryLimit: this.policy.isolateMemoryMb });
    let bootstrap: ivm.Script;
    let script: ivm.Script;
    try {
      bootstrap = isolate.compileScriptSync(GUEST_BOOTSTRAP, { filename: BOOTSTRAP_FILE });
    } catch (e) {
      isolate.dispose();
      throw e;
    }
    try {
      script = isolate.compileScriptSync(wrapMechanismJs(compiled.js), {
        filename: GUEST_FILE,
        lineOffset: -1,
      });
    } catch (e) {
      isolate.dispose();
      return err("load", "syntax-error", `the compiled JavaScript does not parse: ${safeMessage(e)}`);
    }
    const m: Loaded = {
      id,
      compiled,
      isolate,
      bootstrap,
      script,
      prepared: [],
      preparing: null,
      warmArgs: null,
      mappings,
    };
    let fresh: Fresh | null = null;
    try {
      const raw: unknown = this.guarded(() => {
        fresh = this.newContextSync(m);
        return fresh.context.evalClosureSync("return __bilevel_inspect()", [], {
          timeout: this.policy.hookTimeoutMs,
        });
      });
      const inspected = parseGuest(raw, this.policy.maxJsonBytes);
      if (!inspected.ok) {
        const e = inspected.error;
        dispose(m);
        return await this.mapPosition(m, { ...e, stage: "load" });
      }
      const problem = checkInspection(inspected.value, compiled);
      if (problem) {
        dispose(m);
        return problem;
      }
    } catch (e) {
      const error = classifyRunError(e, "load", isolate, this.policy.hookTimeoutMs);
      dispose(m);
      return error;
    } finally {
      releaseFresh(fresh);
    }
    this.loaded.set(id, m);
    this.prepare(m);
    return null;
  }

  /** How many contexts were warmed ahead so far (a warm-up runs no mechanism code). */
  get warmed(): number {
    return this.warmUps;
  }

  /** How many contexts stand ready for `id`'s next calls (built ahead, see PREPARED_CONTEXTS). */
  reserved(id: string): number {
    return this.loaded.get(id)?.prepared.length ?? 0;
  }

  async unload(id: string): Promise<void> {
    const m = this.loaded.get(id);
    if (!m) return;
    this.loaded.delete(id);
    await m.preparing?.catch(() => {});
    dispose(m);
  }

  /** The search space the call names: its text, or the one held (sent as its length), checked once per text. */
  private params(sent: TextOrHeld): { json: string; value: ParamSpec[] } {
    if (typeof sent === "number") {
      heldText("search space", sent, this.paramsCache?.json ?? null);
      return this.paramsCache!;
    }
    if (this.paramsCache?.json === sent) return this.paramsCache;
    const value = parseJson(sent);
    if (!isParamList(value)) throw new InvalidRequest(`invalid search space: ${isParamList.explain()}`);
    this.paramsCache = { json: sent, value };
    return this.paramsCache;
  }

  /** The history text the call names: its text, or the one held (sent as its length), checked once per text. */
  private history(sent: TextOrHeld): string {
    if (typeof sent === "number") return heldText("history", sent, this.historyCache);
    if (this.historyCache === sent) return sent;
    const value = parseJson(sent);
    if (!isHistory(value)) throw new InvalidRequest(`invalid history: ${isHistory.explain()}`);
    this.historyCache = sent;
    return sent;
  }

  /**
   * Check the caller's data before any guest code runs: the only place a call throws InvalidRequest.
   * A batch checks every call's data first, so that no guest code runs for a batch that is refused.
   * A text the call leaves out (sent as its length) is the one the last accepted call sent.
   */
  checkCall(call: WireCall): CheckedCall {
    try {
      const params = this.params(call.paramsJson);
      const historyJson = this.history(call.historyJson);
      // Depth first: stringifying a very deep value overflows the stack.
      if (jsonDepth(call.state, MAX_DEPTH) > MAX_DEPTH) {
        throw new InvalidRequest(`the state passed in nests deeper than ${MAX_DEPTH} levels`);
      }
      if (Buffer.byteLength(JSON.stringify(call.state), "utf8") > this.policy.maxStateBytes) {
        throw new InvalidRequest(`the state passed in exceeds ${this.policy.maxStateBytes} bytes`);
      }
      return { params: params.value, paramsJson: params.json, historyJson };
    } catch (e) {
      if (e instanceof InvalidRequest) throw e;
      throw new InvalidRequest(`invalid call data: ${safeMessage(e)}`);
    }
  }

  /**
   * Run one hook call. Throws InvalidRequest for bad call data (before any guest code runs); every
   * other failure, including an unexpected exception here once guest code ran, is an outcome that
   * blames the mechanism (the host quarantines it).
   */
  async call(call: WireCall, checked?: CheckedCall): Promise<ChildCallOutcome> {
    const stage = call.hook;
    const data = checked ?? this.checkCall(call);
    try {
      return await this.run(call, data);
    } catch (e) {
      return {
        ok: false,
        error: err(
          stage,
          "crashed",
          `the sandbox failed while running the mechanism or handling its output: ${safeMessage(e)}`,
        ),
      };
    }
  }

  private async run(call: WireCall, data: CheckedCall): Promise<ChildCallOutcome> {
    const stage = call.hook;
    const m = this.loaded.get(call.mechanismId);
    if (!m || m.isolate.isDisposed)
      return { ok: false, error: err(stage, "crashed", "the mechanism is not loaded") };
    if (!m.compiled.manifest.hooks.includes(call.hook)) {
      return { ok: false, error: err(stage, "missing-hook", `the manifest does not declare ${call.hook}`) };
    }
    if (m.prepared.length === 0) await m.preparing;
    let fresh = m.prepared.shift() ?? null;
    const active = newActive(call, data.params, m.compiled.manifest.capabilities, this.policy);
    const args = guestArgs(call, data);
    m.warmArgs = warmInput(args);
    let raw: unknown;
    try {
      this.active = active;
      raw = this.guarded(() => {
        fresh ??= this.newContextSync(m);
        return fresh.invoke.applySync(undefined, args, { timeout: this.policy.hookTimeoutMs });
      });
    } catch (e) {
      // A capability fault is the root cause even if the guest then ran out of time retrying.
      if (active.fault) return { ok: false, error: await this.faultError(m, stage, active.fault) };
      return { ok: false, error: classifyRunError(e, stage, m.isolate, this.policy.hookTimeoutMs) };
    } finally {
      this.active = null;
      releaseFresh(fresh);
      // The reserve is refilled once this request is answered (setImmediate runs after the
      // response, or after the whole batch, is written), not while the host waits for it.
      setImmediate(() => {
        if (!m.isolate.isDisposed) this.prepare(m);
      });
    }
    if (active.fault) return { ok: false, error: await this.faultError(m, stage, active.fault) };
    const parsed = parseGuest(raw, this.policy.maxJsonBytes * 2);
    if (!parsed.ok) return { ok: false, error: await this.mapPosition(m, { ...parsed.error, stage }) };
    return checkedOutcome(call, parsed.value, active, this.policy);
  }

  /** A context with the bootstrap and the mechanism's factory in place. */
  private newContextSync(m: Loaded): Fresh {
    return this.boot(m, m.isolate.createContextSync(), false);
  }

  /**
   * A context built ahead: created off the main thread (the bulk of the work), then booted and
   * warmed here at once. Each further await would cost two thread hand-offs, which on a busy
   * machine stretched a build from ~0.6 ms to over 2 ms (p90), into the next call's time.
   */
  private async newContext(m: Loaded): Promise<Fresh | null> {
    const context = await m.isolate.createContext();
    try {
      return this.boot(m, context, true);
    } catch {
      // The next call builds its context synchronously (no warm-up) and reports any error there.
      return null;
    }
  }

  /** Run the bootstrap and the mechanism's script in `context` (released if that fails), then the warm-up if asked. */
  private boot(m: Loaded, context: ivm.Context, warm: boolean): Fresh {
    const timeout = this.policy.hookTimeoutMs;
    let invoke: ivm.Reference<GuestInvoke> | null = null;
    try {
      const bootstrap = m.bootstrap.runSync(context, { reference: true, timeout });
      // GUEST_BOOTSTRAP returns its entry point.
      const entry = bootstrap.applySync(undefined, this.bootstrapArgs, {
        timeout,
        result: { reference: true },
      }) as ivm.Reference<GuestInvoke>;
      invoke = entry;
      bootstrap.release();
      m.script.runSync(context, { timeout });
      if (warm && m.warmArgs) {
        entry.applySync(undefined, [...m.warmArgs, true], { timeout });
        this.warmUps++;
      }
      return { context, invoke: entry };
    } catch (e) {
      releaseFresh({ context, invoke });
      throw e;
    }
  }

  /** Build contexts off the critical path, one after another, until PREPARED_CONTEXTS are ready. */
  private prepare(m: Loaded): void {
    if (m.preparing || m.prepared.length >= PREPARED_CONTEXTS) return;
    m.preparing = (async () => {
      const fresh = await this.newContext(m);
      if (!fresh) return false;
      if (this.loaded.get(m.id) !== m) {
        releaseFresh(fresh);
        return false;
      }
      m.prepared.push(fresh);
      return true;
    })()
      .catch(() => false)
      .then((built) => {
        m.preparing = null;
        // The next one after the current turn: a call waiting on this build resumes first, rather
        // than find the isolate busy with the next build.
        if (built) setImmediate(() => this.prepare(m));
      });
  }

  /** A sticky fault (a refused capability call or allocation) as the call's error, at the mechanism's line. */
  private async faultError(
    m: Loaded,
    stage: SandboxStage,
    fault: NonNullable<Active["fault"]>,
  ): Promise<SandboxError> {
    const { line, column } = fault;
    return this.mapPosition(m, {
      ...err(stage, fault.code, fault.message),
      ...(line ? { line, column } : {}),
    });
  }

  /** Map a compiled-JS position to the TypeScript source (lazily: only errors need it). */
  private async mapPosition(m: Loaded, error: SandboxError): Promise<SandboxError> {
    if (error.line === undefined || error.column === undefined) return stripPosition(error);
    if (m.mappings === undefined) {
      try {
        // The compiler (ts-morph) loads only when first needed: hook calls do not need it, and a
        // mechanism the host compiled comes with its mappings.
        const { mappingsFor } = await import("./compiler.ts");
        m.mappings = mappingsFor(m.compiled.source, m.compiled.js);
      } catch {
        m.mappings = null;
      }
    }
    if (m.mappings === null) return stripPosition(error);
    const pos = originalPosition(m.mappings, error.line, error.column);
    return pos ? { ...error, line: pos.line, column: pos.column } : stripPosition(error);
  }

  disposeAll(): void {
    for (const m of this.loaded.values()) dispose(m);
    this.loaded.clear();
  }
}

/** The text a call left out (sent as its length): the one held, if it has that length. */
function heldText(what: string, length: number, held: string | null): string {
  if (held === null)
    throw new InvalidRequest(`the call leaves out its ${what}, and no earlier call sent one`);
  if (held.length !== length) {
    throw new InvalidRequest(
      `the call leaves out its ${what} as one of ${length} characters, but the one held has ${held.length}`,
    );
  }
  return held;
}

/** The guest entry point's arguments for a call: its head (see __bilevel_invoke), params, history, argument. */
export function guestArgs(call: WireCall, texts: CallTexts): [string, string, string, string | null] {
  const head = JSON.stringify({
    hook: call.hook,
    seed: callSeed(call.seed, call.mechanismId, call.iteration, call.hook, "guest"),
    iteration: call.iteration,
    incumbent: call.incumbent,
    best: call.best,
    acceptance: call.acceptance,
    pending: call.pending,
    state: call.state,
  });
  const argument = call.argument === undefined ? null : JSON.stringify(call.argument);
  return [head, texts.paramsJson, texts.historyJson, argument];
}

/**
 * What a context built ahead is warmed with (see Loaded.warmArgs): a call's head and argument.
 * Not its params and history: parsing them cost the warm-up more than it saved the call.
 */
export function warmInput(
  args: readonly [string, string, string, string | null],
): [string, string, string, string | null] {
  return [args[0], "[]", "[]", args[3]];
}

/** A refused capability call's message; the call budget's names the call and the policy limit. */
function capabilityMessage(
  op: unknown,
  result: { code: string; message: string },
  policy: SandboxPolicy,
): string {
  if (result.code !== "capability-budget") return result.message;
  return `${String(op).slice(0, 60)}: the hook made more than ${policy.capabilityCallBudget} capability calls (policy.capabilityCallBudget)`;
}

/** {line, column} the guest sent with "at", if they are positive integers. */
function guestPosition(args: unknown): { line?: number; column?: number } {
  try {
    const v: unknown = typeof args === "string" ? JSON.parse(args) : null;
    const { line, column } = (v ?? {}) as { line?: unknown; column?: unknown };
    if (Number.isInteger(line) && Number.isInteger(column) && (line as number) > 0 && (column as number) > 0)
      return { line: line as number, column: column as number };
  } catch {
    // no position
  }
  return {};
}

function parseJson(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    throw new InvalidRequest("not JSON");
  }
}

function stripPosition(error: SandboxError): SandboxError {
  const { line: _l, column: _c, ...rest } = error;
  return rest;
}

function describeResult(hook: HookName): string {
  switch (hook) {
    case "guide":
      return "something other than text or nothing";
    case "suggest":
      return "something other than a suggestion or nothing";
    case "filter":
      return "something other than a verdict";
    default:
      return "an invalid value";
  }
}

function err(stage: SandboxStage, code: SandboxError["code"], message: string): SandboxError {
  return { stage, code, message: sanitize(message) };
}

function safeMessage(e: unknown): string {
  try {
    if (e instanceof Error) return String(e.message);
    return typeof e === "string" ? e : "unknown error";
  } catch {
    return "unknown error";
  }
}

function classifyRunError(
  e: unknown,
  stage: SandboxStage,
  isolate: ivm.Isolate,
  timeoutMs: number,
): SandboxError {
  const message = safeMessage(e);
  if (isolate.isDisposed || /memory limit/i.test(message)) {
    return err(stage, "memory", `the isolate ran out of memory (${message})`);
  }
  if (/timed out/i.test(message)) return err(stage, "timeout", timeoutMessage(stage, timeoutMs));
  return err(stage, "thrown", message);
}

type Parsed = { ok: true; value: unknown } | { ok: false; error: SandboxError };

/** Parse what the guest returned: a JSON string of bounded size, {ok:true,…} or {ok:false,code,message}. */
function parseGuest(raw: unknown, maxChars: number): Parsed {
  if (typeof raw !== "string")
    return { ok: false, error: err("load", "invalid-result", "the sandbox entry point was tampered with") };
  if (raw.length > maxChars)
    return { ok: false, error: err("load", "invalid-result", "the result is too large") };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, error: err("load", "invalid-result", "the result is not JSON") };
  }
  if (value === null || typeof value !== "object") {
    return { ok: false, error: err("load", "invalid-result", "the sandbox entry point was tampered with") };
  }
  const v = value as { ok?: unknown; code?: unknown; message?: unknown; line?: unknown; column?: unknown };
  if (v.ok === true) return { ok: true, value };
  // "memory": the guest refused an allocation that would escape its limit (claiming it only hurts itself).
  const allowed = [
    "thrown",
    "invalid-result",
    "invalid-state",
    "invalid-manifest",
    "missing-hook",
    "memory",
  ] as const;
  let code: SandboxError["code"] = allowed.find((c) => c === v.code) ?? "thrown";
  // Allocation failures outside the JS heap (ArrayBuffers) surface as RangeErrors in the guest.
  if (
    code === "thrown" &&
    typeof v.message === "string" &&
    /^RangeError: Array buffer allocation failed/.test(v.message)
  ) {
    code = "memory";
  }
  const error: SandboxError = {
    ...err("load", code, typeof v.message === "string" ? v.message : "unknown error"),
    ...(Number.isInteger(v.line) && (v.line as number) > 0 ? { line: v.line as number } : {}),
    ...(Number.isInteger(v.column) && (v.column as number) > 0 ? { column: v.column as number } : {}),
  };
  return { ok: false, error };
}

function checkInspection(value: unknown, compiled: CompiledMechanism): SandboxError | null {
  const v = value as { hooks?: unknown; manifest?: unknown };
  if (canonical(v.manifest) !== canonical(compiled.manifest)) {
    return err("load", "invalid-manifest", "the manifest at run time differs from the compiled manifest");
  }
  const hooks = Array.isArray(v.hooks) ? v.hooks : [];
  for (const hook of compiled.manifest.hooks) {
    if (!hooks.includes(hook))
      return err("load", "missing-hook", `the manifest declares ${hook} but it is not a function`);
  }
  for (const hook of hooks) {
    if (!(compiled.manifest.hooks as readonly unknown[]).includes(hook)) {
      return err("load", "missing-hook", `${String(hook)} is defined but the manifest does not declare it`);
    }
  }
  return null;
}

/** JSON with sorted keys, for comparing manifests. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** The message of a guest-reported fault ({ code: "memory", message }), bounded. */
function guestFaultMessage(args: unknown): string {
  try {
    const parsed: unknown = typeof args === "string" ? JSON.parse(args) : null;
    const message = (parsed as { message?: unknown } | null)?.message;
    if (typeof message === "string") return message.slice(0, 500);
  } catch {
    // fall through
  }
  return "an allocation was refused";
}

function releaseFresh(
  fresh: { context: ivm.Context; invoke: ivm.Reference<GuestInvoke> | null } | null,
): void {
  for (const handle of [fresh?.invoke, fresh?.context]) {
    try {
      handle?.release();
    } catch {
      // already released with its isolate
    }
  }
}

function dispose(m: Loaded): void {
  for (const fresh of m.prepared.splice(0)) releaseFresh(fresh);
  try {
    if (!m.isolate.isDisposed) m.isolate.dispose();
  } catch {
    // disposing twice is harmless
  }
}

/** A call's answer from what its guest returned: the result and the states checked against the policy. */
function checkedOutcome(
  call: WireCall,
  parsed: unknown,
  active: Active,
  policy: SandboxPolicy,
): ChildCallOutcome {
  const stage = call.hook;
  const out = parsed as { value?: unknown; state?: unknown };
  const result = { hook: call.hook, value: out.value };
  if (!isHookResult(result)) {
    return {
      ok: false,
      error: err(
        stage,
        "invalid-result",
        `${call.hook} returned ${describeResult(call.hook)}: ${isHookResult.explain()}`,
      ),
    };
  }
  // Depth before size: stringifying a very deep value overflows the stack.
  if (jsonDepth(out.state, MAX_DEPTH) > MAX_DEPTH || jsonDepth(out.value, MAX_DEPTH) > MAX_DEPTH) {
    return {
      ok: false,
      error: err(stage, "invalid-state", `the state or result nests deeper than ${MAX_DEPTH} levels`),
    };
  }
  const stateBytes = Buffer.byteLength(JSON.stringify(out.state ?? null), "utf8");
  if (stateBytes > policy.maxStateBytes) {
    return {
      ok: false,
      error: err(
        stage,
        "invalid-state",
        `the state is ${stateBytes} bytes, over the ${policy.maxStateBytes}-byte cap`,
      ),
    };
  }
  // null = unchanged (capability updates replace objects, so identity tells).
  const after = active.session.state;
  const before = call.capabilities;
  const capabilities =
    after.tabu === before.tabu &&
    after.bandit === before.bandit &&
    after.banditSettings === before.banditSettings
      ? null
      : after;
  if (capabilities) {
    // The guest fills this host-kept data; it is stored with the run and sent with every call.
    const cap = Math.min(policy.maxCapabilityStateBytes, Math.floor(policy.maxJsonBytes / 2));
    const bytes = Buffer.byteLength(JSON.stringify(capabilities), "utf8");
    if (bytes > cap) {
      return {
        ok: false,
        error: err(
          stage,
          "invalid-state",
          `the capability data (tabu lists, bandits) is ${bytes} bytes, over the ${cap}-byte cap`,
        ),
      };
    }
  }
  return {
    ok: true,
    result: result as HookResult,
    state: out.state ?? null,
    capabilities,
    logs: active.logs,
    droppedLogLines: active.dropped,
    capabilityCalls: active.session.calls,
  };
}

/** What a call's capability calls see and change (its session), and what it logs. */
function newActive(
  call: WireCall,
  params: ParamSpec[],
  capabilities: readonly CapabilityName[],
  policy: SandboxPolicy,
): Active {
  const declared = new Set<CapabilityName>(capabilities);
  const allowed = new Set([...declared].filter((c) => policy.grantedCapabilities.includes(c)));
  return {
    session: {
      params,
      iteration: call.iteration,
      declared,
      allowed,
      budget: policy.capabilityCallBudget,
      random: sfc32(callSeed(call.seed, call.mechanismId, call.iteration, call.hook, "capabilities")),
      calls: 0,
      state: { ...call.capabilities },
    },
    logs: [],
    dropped: 0,
    fault: null,
  };
}
