// Git as autoresearch keeps it: a run works on a branch of its own, bilevel/<run-name>, checked
// out in a worktree inside the run folder, so the user's branch, index and working tree are never
// touched. Each trial's train.py is a commit whose message is the trial's description; a kept
// trial leaves the branch on its commit, a discarded one resets the branch to where it was (the
// commit stays in the repository: results.tsv names it). The branch head is always the incumbent.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "./errors.ts";
import { gitToplevel } from "./external-script.ts";

export interface GitBranchOptions {
  /** The user's script (absolute). */
  readonly script: string;
  /** The run folder: the worktree goes in <runDir>/worktree. */
  readonly runDir: string;
  readonly runName: string;
  /** Continue the run's existing branch (else the branch must not exist yet). */
  readonly resume: boolean;
}

/** A git failure, with git's own words. */
export class GitError extends UserError {
  override name = "GitError";
}

function git(cwd: string, args: readonly string[], input?: string): string {
  const r = spawnSync("git", ["-C", cwd, ...args], {
    encoding: "utf8",
    ...(input !== undefined ? { input } : {}),
    // Commits must not wait for an editor, a pager or a passphrase prompt.
    env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_EDITOR: "true", GIT_PAGER: "cat" },
  });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || "").trim();
    throw new GitError(`git ${args.join(" ")} (in ${cwd}) failed: ${why}`);
  }
  return r.stdout.trim();
}

function gitOk(cwd: string, args: readonly string[]): boolean {
  return spawnSync("git", ["-C", cwd, ...args], { encoding: "utf8" }).status === 0;
}

export class GitBranch {
  readonly branch: string;
  readonly worktree: string;
  /** The user's repository (null: the script is not in one, and the run keeps its own in the worktree). */
  readonly repo: string | null;
  /** The script's path inside the repository. */
  readonly file: string;
  private readonly resume: boolean;
  private identity: string[] = [];
  /** The commit of the trial now running, when it made one, and the head before it. */
  private pending: { commit: string; parent: string | null } | null = null;

  constructor(options: GitBranchOptions) {
    this.branch = `bilevel/${options.runName}`;
    this.worktree = path.join(path.resolve(options.runDir), "worktree");
    this.repo = gitToplevel(path.dirname(options.script));
    this.file = this.repo ? path.relative(this.repo, options.script) : path.basename(options.script);
    this.resume = options.resume;
    if (
      this.repo &&
      !options.resume &&
      gitOk(this.repo, ["rev-parse", "--verify", "--quiet", `refs/heads/${this.branch}`])
    ) {
      throw new GitError(
        `git branch ${this.branch} already exists in ${this.repo} (an earlier run?): give this run another name ("name" in the run config), or delete the branch (git branch -D ${this.branch})`,
        2,
      );
    }
  }

  /** Create the branch and its worktree (a new run), or check the worktree out again (a resume); then reset to `incumbent`. */
  open(incumbent: string | null): void {
    if (!existsSync(path.join(this.worktree, ".git"))) this.createWorktree();
    if (incumbent !== null && this.head() !== incumbent)
      git(this.worktree, ["reset", "--quiet", "--hard", incumbent]);
    this.pending = null;
    const named = spawnSync("git", ["-C", this.worktree, "config", "user.email"], { encoding: "utf8" });
    // Commits need an author; a machine without one (CI) still gets its history.
    this.identity =
      named.status === 0 && named.stdout.trim() !== ""
        ? []
        : ["-c", "user.name=bilevel", "-c", "user.email=bilevel@localhost"];
  }

  private createWorktree(): void {
    mkdirSync(path.dirname(this.worktree), { recursive: true });
    if (this.repo === null) {
      // No repository around the script: the run keeps one of its own.
      spawnSync("git", ["init", "--quiet", "-b", this.branch, this.worktree], { encoding: "utf8" });
      if (!existsSync(path.join(this.worktree, ".git")))
        throw new GitError(`git init ${this.worktree} failed`);
      return;
    }
    git(this.repo, ["worktree", "prune"]);
    const exists = gitOk(this.repo, ["rev-parse", "--verify", "--quiet", `refs/heads/${this.branch}`]);
    if (exists) git(this.repo, ["worktree", "add", "--quiet", this.worktree, this.branch]);
    else if (this.resume)
      throw new GitError(
        `the run's branch ${this.branch} is gone from ${this.repo}: it cannot be continued`,
        2,
      );
    else git(this.repo, ["worktree", "add", "--quiet", "-b", this.branch, this.worktree, "HEAD"]);
  }

  /** The branch head (null before the first commit of a repository of the run's own). */
  head(): string | null {
    const r = spawnSync("git", ["-C", this.worktree, "rev-parse", "--verify", "--quiet", "HEAD"], {
      encoding: "utf8",
    });
    return r.status === 0 ? r.stdout.trim() : null;
  }

  /**
   * Commit `content` as the script with `message`; returns the commit. The same content as the
   * head makes no commit (the baselines: the head is the script as on disk).
   */
  commit(content: Buffer, message: string): string {
    const target = path.join(this.worktree, this.file);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, content);
    git(this.worktree, ["add", "--force", "--", this.file]);
    const parent = this.head();
    if (parent !== null && gitOk(this.worktree, ["diff", "--cached", "--quiet", "HEAD", "--", this.file])) {
      this.pending = null;
      return parent;
    }
    // No hooks (they could change the file that runs), no signing prompt.
    const settings = [...this.identity, "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"];
    git(
      this.worktree,
      [...settings, "commit", "--quiet", "--no-verify", "-F", "-", "--", this.file],
      message,
    );
    const commit = this.head() ?? "";
    this.pending = { commit, parent };
    return commit;
  }

  /** After the trial was judged: a kept one stays the head; otherwise the branch goes back. */
  judged(commit: string | null, kept: boolean): void {
    const pending = this.pending;
    this.pending = null;
    if (kept || pending === null || pending.commit !== commit) return;
    if (pending.parent === null) {
      // The first commit of a repository of the run's own was not kept: nothing to go back to.
      return;
    }
    git(this.worktree, ["reset", "--quiet", "--hard", pending.parent]);
  }
}
