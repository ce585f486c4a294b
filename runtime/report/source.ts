// What a report is made from: a run folder (run.db) or a study folder (study.json). `report` renders
// it once; `serve` renders it again whenever its revision changes.
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.ts";
import { unreadable } from "../open-run.ts";
import { RunStore } from "../store.ts";
import { CSS, SCRIPT } from "./assets.ts";
import { page } from "./html.ts";
import { loadRunPageData } from "./run-data.ts";
import { runBody } from "./run-page.ts";
import { isStudyFolder, loadStudyData, STUDY_FILE, type StudyData } from "./study-data.ts";
import { studyBody } from "./study-page.ts";
import { isBilevelStudy, studyResultsData } from "./study-results.ts";

/** A study folder's page data: `bilevel study`'s own results, or the fallback reader for others. */
function studyPageData(dir: string): StudyData {
  return isBilevelStudy(dir) ? studyResultsData(dir) : loadStudyData(dir);
}

export interface ReportSource {
  readonly kind: "run" | "study";
  readonly dir: string;
  /** The page's <main> content and its title, freshly read. */
  content(): Promise<{ readonly title: string; readonly body: string }>;
  /** Changes whenever the content would. */
  revision(): string;
  close(): void;
}

/** A study folder when it holds study.json, else a run folder (which must hold run.db). */
export function openReportSource(
  dir: string,
  loadStudy: (dir: string) => StudyData = studyPageData,
): ReportSource {
  const root = path.resolve(dir);
  if (!existsSync(root)) throw new UserError(`${root}: no such folder`, 2);
  if (isStudyFolder(root)) return studySource(root, loadStudy);
  if (!RunStore.exists(root))
    throw new UserError(`${root}: neither a run folder (no run.db) nor a study folder (no ${STUDY_FILE})`, 2);
  let store: RunStore;
  try {
    store = RunStore.open(root, { readOnly: true });
  } catch (error) {
    throw unreadable(root, root, error);
  }
  return {
    kind: "run",
    dir: root,
    async content() {
      const data = loadRunPageData(store);
      return { title: `bilevel run ${data.report.name}`, body: (await runBody(data)).html };
    },
    revision: () => store.revision(),
    close: () => store.close(),
  };
}

function studySource(root: string, loadStudy: (dir: string) => StudyData): ReportSource {
  // The study's revision: study.json's mtime and every run's store revision. The run folders are
  // asked of the loader only when study.json changes, so polling stays a few cheap reads per run.
  let known: { mtimeMs: number; dirs: readonly string[] } | null = null;
  const runDirs = (): { mtimeMs: number; dirs: readonly string[] } => {
    const mtimeMs = statSync(path.join(root, STUDY_FILE)).mtimeMs;
    if (known?.mtimeMs !== mtimeMs)
      known = { mtimeMs, dirs: loadStudy(root).runs.map((r) => path.resolve(root, r.dir)) };
    return known;
  };
  const revision = () => {
    const { mtimeMs, dirs } = runDirs();
    const stamps = dirs.map((dir) => {
      if (!RunStore.exists(dir)) return "-";
      const store = RunStore.open(dir, { readOnly: true });
      try {
        return store.revision();
      } finally {
        store.close();
      }
    });
    return [mtimeMs, ...stamps].join("|");
  };
  return {
    kind: "study",
    dir: root,
    async content() {
      const data = loadStudy(root);
      return { title: `bilevel study ${data.name}`, body: (await studyBody(data)).html };
    },
    revision,
    close: () => {},
  };
}

/** The whole self-contained page; `live` (from serve) turns on updates over Server-Sent Events. */
export async function renderDocument(
  source: ReportSource,
  live?: { readonly events: string; readonly content: string; readonly revision: string },
): Promise<string> {
  const { title, body } = await source.content();
  return page({ title, body: { html: body }, css: CSS, script: SCRIPT, live });
}
