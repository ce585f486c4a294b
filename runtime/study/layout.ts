// The study folder:
//   study.json        the spec and every run's config (written once, when the study is created)
//   runs/<id>/        one ordinary run folder per group × repeat (run.db, results.tsv, trials/),
//                     plus config.json (what `bilevel run --config` read), run.log (its output)
//                     and run.pid: the pid of its process, written by the study right after
//                     starting it (the run waits for it before touching the folder), removed when
//                     that process exits (a killed study leaves it: its resume reads it)
//   attempts.jsonl    one line per finished run process: run id, start, seconds, exit status
//                     (and a failed one's last error line)
//   results.json      loadStudy()'s output, rewritten at the end of each `bilevel study`
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.ts";
import { RunStore } from "../store.ts";
import { STUDY_FORMAT, type StudyRunSpec, type StudySpec } from "./spec.ts";

export interface StudyFile {
  readonly spec: StudySpec;
  readonly runs: readonly StudyRunSpec[];
  readonly createdAt: string;
}

export interface Attempt {
  readonly run: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** A failed attempt's last error line in run.log (what it printed, not an earlier attempt's). */
  readonly error?: string;
}

export const studyJsonPath = (dir: string) => path.join(dir, "study.json");
export const runDir = (dir: string, id: string) => path.join(dir, "runs", id);
export const attemptsPath = (dir: string) => path.join(dir, "attempts.jsonl");
export const resultsPath = (dir: string) => path.join(dir, "results.json");
export const runPidPath = (folder: string) => path.join(folder, "run.pid");

/** The pid in a run folder's run.pid, or null (no file, or not a pid yet: a write in progress). */
export function readRunPid(folder: string): number | null {
  let text: string;
  try {
    text = readFileSync(runPidPath(folder), "utf8").trim();
  } catch {
    return null;
  }
  const pid = Number(text);
  return /^\d+$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

export function isStudy(dir: string): boolean {
  return existsSync(studyJsonPath(dir));
}

export function readStudyJson(dir: string): StudyFile {
  let parsed: StudyFile;
  try {
    parsed = JSON.parse(readFileSync(studyJsonPath(dir), "utf8")) as StudyFile;
  } catch (error) {
    throw new UserError(`${dir}: no readable study.json (${(error as Error).message})`, 2);
  }
  if (parsed.spec?.format !== STUDY_FORMAT)
    throw new UserError(`${dir}/study.json is not a ${STUDY_FORMAT} study`, 2);
  return parsed;
}

export function writeStudyJson(dir: string, file: StudyFile): void {
  writeFileSync(studyJsonPath(dir), `${JSON.stringify(file, null, 2)}\n`);
}

export function appendAttempt(dir: string, attempt: Attempt): void {
  appendFileSync(attemptsPath(dir), `${JSON.stringify(attempt)}\n`);
}

export function readAttempts(dir: string): Attempt[] {
  if (!existsSync(attemptsPath(dir))) return [];
  return readFileSync(attemptsPath(dir), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Attempt];
      } catch {
        return []; // a line cut by a kill
      }
    });
}

export type RunState = "not started" | "running" | "stopped" | "failed" | "finished" | "empty";

/**
 * What a run's store says (empty: a run.db without tables or a config, i.e. killed before its
 * first write; a study starts such a run afresh, deleting it). A store that cannot be read for
 * another reason (damaged, locked, written by a newer bilevel) is an error: it is never taken for
 * an empty one, so nothing in it is deleted.
 */
export function runState(dir: string): RunState {
  if (!RunStore.exists(dir)) return "not started";
  let store: RunStore;
  try {
    store = RunStore.open(dir, { readOnly: true });
  } catch (error) {
    if (RunStore.hasNoTables(dir)) return "empty";
    const why = error instanceof Error ? error.message : String(error);
    throw new UserError(`cannot read the run store ${RunStore.dbPath(dir)} (${why}); it is left as it is`);
  }
  try {
    if (store.runConfig() === null) return "empty";
    const status = store.getMeta("status");
    return status === "finished" || status === "stopped" || status === "failed" ? status : "running";
  } finally {
    store.close();
  }
}
