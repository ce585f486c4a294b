// Offline Level 2: the built-in mechanism library (examples/mechanisms/*.ts).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Researcher, ResearchResult } from "./types.ts";

/** The built-in mechanism library: examples/mechanisms/*.ts. */
export function libraryDir(): string {
  return path.resolve(import.meta.dirname, "../../examples/mechanisms");
}

export function listLibrary(dir = libraryDir()): { name: string; file: string }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".ts"))
    .sort()
    .map((f) => ({ name: f.replace(/\.ts$/, ""), file: path.join(dir, f) }));
}

/**
 * Offline Level 2: no code is generated. Each session validates the next library mechanism that
 * this run has not tried yet (in a fixed order) on the live trace.
 */
export class LibraryResearcher implements Researcher {
  readonly kind = "library";
  private readonly dir: string;

  constructor(dir = libraryDir()) {
    this.dir = dir;
  }

  async research(input: Parameters<Researcher["research"]>[0]): Promise<ResearchResult> {
    const next = listLibrary(this.dir).find((m) => !input.tried.includes(m.name));
    if (!next) return { status: "none", reason: "every library mechanism has been tried in this run" };
    const source = readFileSync(next.file, "utf8");
    const report = await input.validate(source);
    if (!report.ok) {
      const e = report.error;
      return {
        status: "rejected",
        origin: "library",
        name: next.name,
        source,
        reason: e ? `${e.stage}/${e.code}: ${e.message}` : "validation failed",
        report,
      };
    }
    return { status: "validated", origin: "library", name: next.name, source, report };
  }
}
