// CachingAjv keeps ajv's generated code for a schema in a cache folder and loads it in later
// processes: the loaded validator must judge exactly as the compiled one, and a damaged cache entry
// must only cost a recompile.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { proposalSchema } from "../../mechanism-api/schemas.ts";
import { CachingAjv } from "../../sandbox/validation.ts";
import { trace } from "./helpers.ts";

const OPTIONS = { strict: true, allErrors: false, allowUnionTypes: true } as const;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "bilevel-ajv-cache-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const samples: unknown[] = [
  trace.proposal,
  { ...trace.proposal, extra: 1 },
  { ...trace.proposal, source: "nobody" },
  { ...trace.proposal, changes: [{ param: "A", value: [] }] },
  null,
  "text",
];

test("a cached validator judges and explains exactly as the compiled one", () => {
  const compiled = new CachingAjv(OPTIONS).compile(proposalSchema, null);
  const first = new CachingAjv(OPTIONS).compile(proposalSchema, dir);
  expect(readdirSync(dir).filter((f) => f.endsWith(".cjs"))).toHaveLength(1);
  // A new instance (as a new process would be) loads the file instead of compiling.
  const loaded = new CachingAjv(OPTIONS).compile(proposalSchema, dir);
  expect(loaded).not.toBe(first);
  for (const value of samples) {
    expect(loaded(value)).toBe(compiled(value));
    expect(loaded.errors ?? null).toEqual(compiled.errors ?? null);
  }
  // Other options are another entry (the generated code differs).
  new CachingAjv({ ...OPTIONS, allErrors: true }).compile(proposalSchema, dir);
  expect(readdirSync(dir).filter((f) => f.endsWith(".cjs"))).toHaveLength(2);
});

test("a damaged entry is compiled again and rewritten", () => {
  new CachingAjv(OPTIONS).compile(proposalSchema, dir);
  const [entry] = readdirSync(dir).filter((f) => f.endsWith(".cjs"));
  const file = path.join(dir, entry!);
  const good = readFileSync(file, "utf8");
  writeFileSync(file, good.slice(0, good.length / 2));
  const validate = new CachingAjv(OPTIONS).compile(proposalSchema, dir);
  expect(validate(trace.proposal)).toBe(true);
  expect(validate({ ...trace.proposal, extra: 1 })).toBe(false);
  expect(readFileSync(file, "utf8")).toBe(good);
});

test("lazy: nothing is compiled before the first call", () => {
  const validate = new CachingAjv(OPTIONS).lazy(proposalSchema);
  expect(validate.errors).toBeNull();
  expect(validate({})).toBe(false);
  expect(validate.errors?.[0]?.keyword).toBe("required");
});
