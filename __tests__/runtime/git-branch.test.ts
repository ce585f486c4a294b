// Git as autoresearch keeps it, with a real repository and real `git`: the run works on its own
// branch bilevel/<name> in a worktree, each trial's train.py is a commit whose message is the
// description, kept trials advance the branch and discarded ones do not, results.tsv's first
// column names the commits, the head is the best script, --resume continues the same branch,
// and the user's branch, index and working tree are exactly as they were.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type ResolvedRunConfig, resolveRunConfig } from "../../runtime/config.ts";
import { GitError } from "../../runtime/git-branch.ts";
import { RunStore, type TrialRow } from "../../runtime/store.ts";
import { createTrainer } from "../../runtime/trainers.ts";
import { executeRun } from "../../runtime/wiring.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bilevel-git-"));
const repo = path.join(tmp, "autoresearch");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function git(cwd: string, ...args: string[]): string {
  const r = spawnSync("git", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

function gitBytes(cwd: string, ...args: string[]): Buffer {
  const r = spawnSync("git", args, { cwd });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function isAncestor(commit: string, of: string): boolean {
  return spawnSync("git", ["merge-base", "--is-ancestor", commit, of], { cwd: repo }).status === 0;
}

/** What the user has: their branch, its head, the index and working tree (status), and train.py on disk. */
function userState() {
  return {
    branch: git(repo, "symbolic-ref", "HEAD"),
    head: git(repo, "rev-parse", "HEAD"),
    master: git(repo, "rev-parse", "refs/heads/master"),
    status: git(repo, "status", "--porcelain", "--untracked-files=all"),
    staged: git(repo, "diff", "--cached"),
    train: readFileSync(path.join(repo, "train.py")),
  };
}

function runConfig(partial: object, baseDir = tmp): ResolvedRunConfig {
  return resolveRunConfig(
    {
      name: "mar5",
      seed: 2,
      trainer: { kind: "external", script: "autoresearch/train.py", params: { MATRIX_LR: {}, DEPTH: {} } },
      acceptance: { mode: "strict" },
      level2: { everyCycles: 0 },
      ...partial,
    },
    { baseDir, label: "test config" },
    { probeCuda: () => false },
  );
}

function copyOf(dir: string, t: TrialRow): Buffer {
  const folder = `trial-${String(t.id).padStart(4, "0")}-iter-${t.iteration}-seed-${t.seed}`;
  return readFileSync(path.join(dir, "trials", folder, "train.py"));
}

beforeAll(() => {
  cpSync(path.resolve(import.meta.dirname, "../fixtures/autoresearch"), repo, { recursive: true });
  git(repo, "init", "-q", "-b", "master");
  git(repo, "config", "user.name", "Researcher");
  git(repo, "config", "user.email", "researcher@example.com");
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "initial");
  // The user's uncommitted work: train.py edited on disk, a staged file, an untracked one.
  const train = path.join(repo, "train.py");
  writeFileSync(train, readFileSync(train, "utf8").replace("MATRIX_LR = 0.04 ", "MATRIX_LR = 0.035"));
  writeFileSync(path.join(repo, "staged.txt"), "staged\n");
  git(repo, "add", "staged.txt");
  writeFileSync(path.join(repo, "notes.txt"), "my notes\n");
});

test("one commit per trial on bilevel/<name>; results.tsv names them; the head is the best train.py; --resume continues the branch; the user's tree is untouched", async () => {
  const before = userState();
  const dir = path.join(tmp, "runs", "mar5");
  await executeRun({ dir, config: runConfig({ iterations: 3 }), offline: true, observer: {} });
  const firstHead = git(repo, "rev-parse", "refs/heads/bilevel/mar5");
  await executeRun({ dir, config: runConfig({ iterations: 6 }), offline: true, resume: true, observer: {} });
  expect(userState()).toEqual(before);

  const store = RunStore.open(dir, { readOnly: true });
  const trials = store.trials();
  store.close();
  expect(trials.filter((t) => t.kind === "search").map((t) => t.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
  const tsv = readFileSync(path.join(dir, "results.tsv"), "utf8").trim().split("\n").slice(1);
  expect(tsv).toHaveLength(trials.length);
  const head = git(repo, "rev-parse", "refs/heads/bilevel/mar5");
  for (const [i, t] of trials.entries()) {
    const commit = t.commit ?? "";
    expect(tsv[i]?.split("\t")[0]).toBe(commit.slice(0, 7));
    expect(git(repo, "rev-parse", `${commit.slice(0, 7)}^{commit}`)).toBe(commit);
    expect(git(repo, "log", "-1", "--format=%B", commit)).toBe(t.description);
    expect(gitBytes(repo, "show", `${commit}:train.py`).equals(copyOf(dir, t))).toBe(true);
    // Kept trials (and the baseline) are on the branch; discarded ones are not.
    expect(isAncestor(commit, head)).toBe(t.kept || t.kind === "baseline");
  }
  // The baseline is the script as on disk (with the user's uncommitted edit), on top of their HEAD.
  const baseline = trials[0] as TrialRow;
  expect(gitBytes(repo, "show", `${baseline.commit}:train.py`).equals(before.train)).toBe(true);
  expect(git(repo, "rev-parse", `${baseline.commit}^`)).toBe(before.head);
  // The branch holds the baseline and the kept trials, nothing else; its head is the best script.
  const kept = trials.filter((t) => t.kept);
  expect(kept.length).toBeGreaterThan(0);
  expect(trials.some((t) => t.kind === "search" && !t.kept)).toBe(true);
  expect(git(repo, "rev-list", "--reverse", `${before.head}..${head}`).split("\n")).toEqual(
    [baseline, ...kept].map((t) => t.commit),
  );
  const best = [...trials]
    .filter((t) => t.valBpb !== null)
    .sort((a, b) => (a.valBpb ?? 0) - (b.valBpb ?? 0))[0];
  expect(gitBytes(repo, "show", `${head}:train.py`).equals(copyOf(dir, best as TrialRow))).toBe(true);
  // The resume continued the branch: the first part's head is in the history of the final one.
  expect(isAncestor(firstHead, head)).toBe(true);
  // The worktree in the run folder has the branch checked out, at its head.
  expect(git(path.join(dir, "worktree"), "rev-parse", "--abbrev-ref", "HEAD")).toBe("bilevel/mar5");
  expect(git(path.join(dir, "worktree"), "status", "--porcelain")).toBe("");
}, 120_000);

test("a new run whose branch exists already is refused before anything is created", async () => {
  const config = runConfig({ iterations: 1 });
  const dir = path.join(tmp, "runs", "again");
  expect(() => createTrainer(config, config.searchSpace, { runDir: dir })).toThrow(GitError);
  await expect(executeRun({ dir, config, offline: true, observer: {} })).rejects.toThrow(
    /git branch bilevel\/mar5 already exists .*give this run another name/,
  );
  expect(existsSync(dir)).toBe(false);
});

test("trainer.git true for a script outside any repository: the run keeps a repository of its own", async () => {
  const alone = path.join(tmp, "alone");
  cpSync(path.resolve(import.meta.dirname, "../fixtures/autoresearch"), alone, { recursive: true });
  const config = runConfig(
    {
      name: "alone",
      iterations: 2,
      trainer: { kind: "external", script: "train.py", params: { DEPTH: {} }, git: true },
    },
    alone,
  );
  const dir = path.join(tmp, "runs", "alone");
  await executeRun({ dir, config, offline: true, observer: {} });
  const store = RunStore.open(dir, { readOnly: true });
  const trials = store.trials();
  store.close();
  const worktree = path.join(dir, "worktree");
  expect(git(worktree, "rev-parse", "--abbrev-ref", "HEAD")).toBe("bilevel/alone");
  for (const t of trials)
    expect(git(worktree, "log", "-1", "--format=%B", t.commit ?? "")).toBe(t.description);
  expect(existsSync(path.join(alone, ".git"))).toBe(false);
});
