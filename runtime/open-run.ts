// Opening an existing run folder's store, with the errors every command (and the report) gives
// alike: a missing folder or run.db is a usage error, an unreadable store exits 1.
import { existsSync } from "node:fs";
import path from "node:path";
import { UserError } from "./errors.ts";
import { RunStore } from "./store.ts";
import { isStudy } from "./study/layout.ts";

/**
 * A run folder's store, read-only unless `writable`. A missing folder or run.db is a usage error
 * (exit 2); a store that cannot be opened (damaged, from a newer bilevel) exits 1 from every
 * command (README).
 */
export function openExisting(
  dir: string,
  { label = dir, writable = false }: { label?: string; writable?: boolean } = {},
): RunStore {
  if (!existsSync(dir)) throw new UserError(`${label}: no such folder`, 2);
  if (!RunStore.exists(dir)) {
    const study = isStudy(dir) ? `; it holds a study, whose runs are under ${path.join(dir, "runs")}` : "";
    throw new UserError(`${label}: no run database (run.db) there${study}`, 2);
  }
  // Opened for writing, an empty database would be given the schema: a run it is not.
  if (writable && RunStore.hasNoTables(dir))
    throw new UserError(`${label}: ${RunStore.dbPath(dir)} holds no run (an empty database)`, 1);
  try {
    return RunStore.open(dir, { readOnly: !writable });
  } catch (error) {
    throw unreadable(dir, label, error);
  }
}

export function unreadable(dir: string, label: string, error: unknown): UserError {
  return new UserError(
    `${label}: cannot read the run database ${RunStore.dbPath(dir)}: ${(error as Error).message}`,
    1,
  );
}
