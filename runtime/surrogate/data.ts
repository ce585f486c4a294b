// The surrogate's data file: JSON lines, a header first, then one line per measured trial.
// Configs are stored as value arrays in the header's parameter order to keep the file small.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, ParamValue, TrialStatus } from "../../mechanism-api/index.d.ts";
import { CachingAjv } from "../../sandbox/validation.ts";
import { UserError } from "../errors.ts";

export const SURROGATE_FORMAT = "bilevel-surrogate";
export const SURROGATE_VERSION = 1;

export interface SurrogateHeader {
  readonly format: typeof SURROGATE_FORMAT;
  readonly version: number;
  readonly device: "cpu" | "cuda";
  readonly budgetSeconds: number;
  /** Trials trained exactly this many steps (compute, not wall time, fixed); null: the time budget. */
  readonly maxSteps: number | null;
  /** Parameter names in the order of every record's `x`. */
  readonly params: readonly string[];
  /** The design's settings: the same ones resume the same design. */
  readonly design: { readonly trials: number; readonly repeats: number; readonly seed: number };
  /** Limits the recorder put on each trial (they define the failure classes). */
  readonly limits: { readonly memoryBytes: number | null; readonly timeoutSeconds: number };
  readonly note: string;
}

export type DesignPhase = "space" | "near-default" | "local" | "repeat";

export interface SurrogateRecord {
  /** Position in the design (records may be written out of order with --jobs). */
  readonly i: number;
  readonly phase: DesignPhase;
  readonly seed: number;
  readonly x: readonly ParamValue[];
  readonly status: TrialStatus;
  readonly valBpb: number | null;
  /** Wall seconds of the whole trial (start-up, training, evaluation). */
  readonly seconds: number;
}

export interface SurrogateData {
  readonly header: SurrogateHeader;
  readonly records: readonly SurrogateRecord[];
}

const scalar = { type: ["number", "string"] };
const headerSchema = {
  type: "object",
  required: [
    "format",
    "version",
    "device",
    "budgetSeconds",
    "maxSteps",
    "params",
    "design",
    "limits",
    "note",
  ],
  properties: {
    format: { const: SURROGATE_FORMAT },
    version: { const: SURROGATE_VERSION },
    device: { enum: ["cpu", "cuda"] },
    budgetSeconds: { type: "number", exclusiveMinimum: 0 },
    maxSteps: { type: ["integer", "null"], minimum: 1 },
    params: { type: "array", minItems: 1, items: { type: "string" } },
    design: {
      type: "object",
      required: ["trials", "repeats", "seed"],
      properties: {
        trials: { type: "integer", minimum: 1 },
        repeats: { type: "integer", minimum: 1 },
        seed: { type: "integer" },
      },
    },
    limits: {
      type: "object",
      required: ["memoryBytes", "timeoutSeconds"],
      properties: { memoryBytes: { type: ["number", "null"] }, timeoutSeconds: { type: "number" } },
    },
    note: { type: "string" },
  },
} as const;
const recordSchema = {
  type: "object",
  required: ["i", "phase", "seed", "x", "status", "valBpb", "seconds"],
  properties: {
    i: { type: "integer", minimum: 0 },
    phase: { enum: ["space", "near-default", "local", "repeat"] },
    seed: { type: "integer", minimum: 0 },
    x: { type: "array", items: scalar },
    status: { enum: ["ok", "invalid-config", "oom", "diverged", "timeout", "crashed"] },
    valBpb: { type: ["number", "null"] },
    seconds: { type: "number", minimum: 0 },
  },
} as const;

// Compiled on first use, their code kept with Node's compile cache (sandbox/validation.ts): a
// command that reads no surrogate data (a run config names the file) does not pay for them.
const ajv = new CachingAjv({ strict: false, allErrors: true, allowUnionTypes: true });
const isHeader = ajv.lazy<SurrogateHeader>(headerSchema);
const isRecord = ajv.lazy<SurrogateRecord>(recordSchema);

/** A data file that cannot be used: a user error (exit 2) naming the file and the line. */
export class SurrogateDataError extends UserError {
  override name = "SurrogateDataError";
  constructor(message: string) {
    super(message, 2);
  }
}

/** Parse a data file's text; throws SurrogateDataError on anything malformed. */
export function parseSurrogateData(text: string, file: string): SurrogateData {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const parse = (line: string, n: number): unknown => {
    try {
      return JSON.parse(line);
    } catch {
      throw new SurrogateDataError(`${file}:${n}: not a JSON line (is it a surrogate data file?)`);
    }
  };
  if (lines.length === 0) throw new SurrogateDataError(`${file}: empty (no header line)`);
  const header = parse(lines[0] ?? "", 1);
  if (!isHeader(header)) {
    throw new SurrogateDataError(
      `${file}:1: not a ${SURROGATE_FORMAT} v${SURROGATE_VERSION} header (${ajv.errorsText(isHeader.errors)})`,
    );
  }
  const records = lines.slice(1).map((line, k) => {
    const r = parse(line, k + 2);
    if (!isRecord(r) || r.x.length !== header.params.length) {
      const why = isRecord(r) ? `x has ${r.x.length} values for ${header.params.length} params` : "";
      throw new SurrogateDataError(
        `${file}:${k + 2}: malformed record ${why || ajv.errorsText(isRecord.errors)}`,
      );
    }
    if (r.status === "ok" && (r.valBpb === null || !(r.valBpb > 0))) {
      throw new SurrogateDataError(`${file}:${k + 2}: an ok record needs valBpb > 0`);
    }
    return r;
  });
  return { header, records };
}

/** Read and check a data file (a missing or unreadable file is a user error too). */
export function readSurrogateData(file: string): SurrogateData {
  return readSurrogateFile(file).data;
}

/** The data file's text and its checked content. */
export function readSurrogateFile(file: string): { text: string; data: SurrogateData } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new SurrogateDataError(
      `cannot read surrogate data ${file}: ${(error as NodeJS.ErrnoException).code}`,
    );
  }
  return { text, data: parseSurrogateData(text, file) };
}

/** The record's config as a name → value map. */
export function recordConfig(header: SurrogateHeader, record: SurrogateRecord): Config {
  return Object.fromEntries(header.params.map((name, k) => [name, record.x[k] as ParamValue]));
}

/** Compact JSON line for a record (floats to 6 significant digits). */
export function recordLine(record: SurrogateRecord): string {
  const round = (v: number) => Number(v.toPrecision(6));
  return JSON.stringify({
    ...record,
    x: record.x.map((v) => (typeof v === "number" ? round(v) : v)),
    valBpb: record.valBpb === null ? null : round(record.valBpb),
    seconds: Math.round(record.seconds * 100) / 100,
  });
}

/** The committed recording of this project's CPU trainer (docs/studies.md). */
export const DEFAULT_SURROGATE_FILE = path.resolve(import.meta.dirname, "../../data/surrogate/cpu.jsonl");

/** Problems with a surrogate file for a run config (empty: usable); `device` is the config's. */
export function checkSurrogateFile(file: string, device: "auto" | "cpu" | "cuda"): string[] {
  let data: SurrogateData;
  try {
    data = readSurrogateData(file);
  } catch (error) {
    return [`trainer.file: ${(error as Error).message}`];
  }
  if (!data.records.some((r) => r.status === "ok")) return [`trainer.file: ${file} has no ok trial to fit`];
  if (device !== "auto" && device !== data.header.device) {
    return [`device ${device}: the surrogate ${file} was recorded on ${data.header.device}`];
  }
  return [];
}

/** The device a surrogate file was recorded on (cpu when it cannot be read: resolution reports that). */
export function surrogateDevice(file: string): "cpu" | "cuda" {
  try {
    return readSurrogateData(file).header.device;
  } catch {
    return "cpu";
  }
}
