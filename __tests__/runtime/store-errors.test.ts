// A full disk and an unwritable run folder are typed StoreErrors with a plain message, and a
// transaction cut short by a full disk leaves nothing behind: the run resumes from the last
// complete step. Root tests (tmpfs mounts, an unprivileged user) are skipped, with the reason
// in their name, where they cannot run.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { RunStore, StoreError } from "../../runtime/store.ts";

let tmp: string;
const mounted: string[] = [];
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "bilevel-store-errors-"));
});
afterAll(() => {
  for (const dir of [...mounted].reverse()) umount(dir);
  rmSync(tmp, { recursive: true, force: true });
});

function mount(dir: string, options: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { stdio: "pipe" });
  mounted.push(dir);
}
function remount(dir: string, options: string): void {
  execFileSync("mount", ["-o", `remount,${options}`, dir], { stdio: "pipe" });
}
function umount(dir: string): void {
  const i = mounted.indexOf(dir);
  if (i < 0) return;
  mounted.splice(i, 1);
  try {
    execFileSync("umount", [dir], { stdio: "pipe" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "pipe" });
  }
}

/** Why tmpfs mounts cannot be used here, or null when they can. */
const mountRefusal = ((): string | null => {
  const probe = mkdtempSync(path.join(tmpdir(), "bilevel-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { stdio: "pipe" });
    execFileSync("umount", [probe], { stdio: "pipe" });
    return null;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return stderr || (error as Error).message;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
const withMount = mountRefusal === null ? test : test.skip;
const mountNote = mountRefusal === null ? "" : ` (skipped: cannot mount a tmpfs: ${mountRefusal})`;

const dbOf = (store: RunStore) => Reflect.get(store, "db") as DatabaseSync;

/** One step of a run as the loop writes it: a proposal, its trial, a checkpoint. */
function step(store: RunStore, n: number, messageBytes: number): void {
  store.transaction(() => {
    const proposalId = store.addProposal({
      iteration: n,
      attempt: 1,
      source: "llm",
      mechanismId: null,
      changes: [{ param: "A", value: n }],
      rationale: "why",
      config: { A: n },
      status: "accepted",
      reason: null,
    });
    store.addTrial({
      iteration: n,
      kind: "search",
      proposalId,
      seed: n,
      config: { A: n },
      changes: [{ param: "A", value: n }],
      status: "ok",
      valBpb: 2,
      kept: false,
      delta: 0,
      result: null,
      message: "x".repeat(messageBytes),
      durationMs: 1,
      description: `step ${n}`,
    });
    store.checkpoint(`step-${n}`);
  });
}

/** Every step is all there or not at all, the database is intact, and `steps` steps are in it. */
function expectConsistent(store: RunStore, steps: number): void {
  const check = dbOf(store).prepare("PRAGMA integrity_check").get() as { integrity_check: string };
  expect(check.integrity_check).toBe("ok");
  expect(store.proposals()).toHaveLength(steps);
  expect(store.trials()).toHaveLength(steps);
  for (let n = 1; n <= steps + 1; n++) expect(store.hasCheckpoint(`step-${n}`)).toBe(n <= steps);
}

function expectDiskFull(error: unknown, dir: string): void {
  expect(error).toBeInstanceOf(StoreError);
  const e = error as StoreError;
  expect(e.code).toBe("disk-full");
  expect(e.dir).toBe(path.resolve(dir));
  expect(e.message).toContain(path.resolve(dir));
  expect(e.message).toMatch(/disk full.*SQLITE_FULL/);
  expect(e.message).not.toMatch(/cannot rollback/);
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

test("SQLITE_FULL mid-transaction (max_page_count): a disk-full StoreError, no partial step, resumable", () => {
  const dir = path.join(tmp, "page-limit");
  let store = RunStore.open(dir);
  step(store, 1, 10);
  const db = dbOf(store);
  const pages = (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count;
  db.exec(`PRAGMA max_page_count = ${pages}`); // no page more: SQLite raises SQLITE_FULL
  expectDiskFull(
    caught(() => step(store, 2, 200_000)),
    dir,
  );
  expect(db.isTransaction).toBe(false);
  expectConsistent(store, 1);
  store.close();

  store = RunStore.open(dir);
  expectConsistent(store, 1);
  step(store, 2, 200_000); // the step is redone, in full
  expectConsistent(store, 2);
  store.close();
});

withMount(
  `a really full disk (1 MiB tmpfs): a disk-full StoreError, and the run resumes once there is space${mountNote}`,
  () => {
    const disk = path.join(tmp, "small-disk");
    mount(disk, "size=1m");
    const dir = path.join(disk, "run");
    let store = RunStore.open(dir);
    try {
      let done = 0;
      let error: unknown;
      for (let n = 1; n <= 100 && error === undefined; n++) {
        try {
          step(store, n, 64 * 1024);
          done = n;
        } catch (e) {
          error = e;
        }
      }
      expect(done).toBeGreaterThan(0);
      expectDiskFull(error, dir);
      expectConsistent(store, done);
      store.close();

      remount(disk, "size=8m"); // the user frees space
      store = RunStore.open(dir);
      expectConsistent(store, done);
      step(store, done + 1, 64 * 1024);
      expectConsistent(store, done + 1);
    } finally {
      store.close(); // an open database would keep the mount busy
      umount(disk);
    }
  },
);

function expectNotWritable(dir: string, message: string): void {
  const error = caught(() => RunStore.open(dir));
  expect(error).toBeInstanceOf(StoreError);
  expect((error as StoreError).code).toBe("not-writable");
  expect((error as StoreError).dir).toBe(dir);
  expect((error as StoreError).message).toBe(message);
}

test("a run folder below a regular file: not-writable, naming the file", () => {
  const file = path.join(tmp, "a-file");
  writeFileSync(file, "");
  const dir = path.join(file, "runs", "r1");
  expectNotWritable(dir, `cannot create the run folder ${dir}: ${file} is a file, not a folder`);
});

withMount(`a run folder on a read-only mount: not-writable (EROFS), not "ENOENT mkdir"${mountNote}`, () => {
  const ro = path.join(tmp, "read-only");
  mount(ro, "size=1m");
  mkdirSync(path.join(ro, "existing"));
  const resumed = path.join(ro, "resumed");
  RunStore.open(resumed).close();
  remount(ro, "ro");
  const dir = path.join(ro, "runs", "r1");
  expectNotWritable(dir, `cannot create the run folder ${dir}: ${ro} is not writable (EROFS)`);
  const existing = path.join(ro, "existing");
  expectNotWritable(existing, `cannot write in the run folder ${existing}: it is not writable (EROFS)`);
  expectNotWritable(resumed, `cannot write in the run folder ${resumed}: it is not writable (EROFS)`);
  umount(ro);
});

const root = process.getuid?.() === 0;
(root ? test : test.skip)(
  `a chmod 0555 parent, as an unprivileged user: not-writable (EACCES)${root ? "" : " (skipped: needs root to switch user)"}`,
  () => {
    const parent = path.join(tmp, "locked");
    mkdirSync(parent);
    chmodSync(tmp, 0o755);
    chmodSync(parent, 0o555);
    const dir = path.join(parent, "runs", "r1");
    const storeUrl = pathToFileURL(path.resolve(import.meta.dirname, "../../runtime/store.ts")).href;
    const driver = `
      import { RunStore, StoreError } from ${JSON.stringify(storeUrl)};
      try { RunStore.open(${JSON.stringify(dir)}); console.log("opened"); }
      catch (e) { console.log(JSON.stringify({ typed: e instanceof StoreError, code: e.code, message: e.message })); }`;
    const r = spawnSync(
      process.execPath,
      ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", "--input-type=module", "-e", driver],
      { uid: 65534, gid: 65534, encoding: "utf8", timeout: 60_000 },
    );
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({
      typed: true,
      code: "not-writable",
      message: `cannot create the run folder ${dir}: ${parent} is not writable (EACCES)`,
    });
  },
);
