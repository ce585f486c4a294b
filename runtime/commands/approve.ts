// `bilevel mechanism approve RUN_DIR ID`: let a validated mechanism that waits for approval
// (policy.autoActivate = false) be activated by the running (or next resumed) run. Ids embed
// mechanism names (a file mechanism's is its file name), so printed lines go through safeText.
import type { Command } from "commander";
import { openExisting } from "../open-run.ts";
import { safeText } from "../terminal-text.ts";

export function registerApproveCommand(group: Command): void {
  group
    .command("approve")
    .description(
      "approve a validated mechanism that waits for approval in a run (policy.autoActivate = false)",
    )
    .argument("<run-dir>", "run folder")
    .argument("<id>", "mechanism id, as `bilevel status` shows it")
    .action((dir: string, id: string) => {
      const store = openExisting(dir, { writable: true });
      try {
        const row = store.mechanisms().find((m) => m.id === id);
        if (!row) {
          const waiting = store.mechanisms().filter((m) => m.status === "pending-approval");
          process.stderr.write(
            `${safeText(`bilevel: no mechanism ${id} in ${dir}; waiting for approval: ${waiting.map((m) => m.id).join(", ") || "none"}`)}\n`,
          );
          process.exitCode = 1;
          return;
        }
        if (row.status !== "pending-approval") {
          process.stderr.write(`${safeText(`bilevel: ${id} is ${row.status}, not waiting for approval`)}\n`);
          process.exitCode = 1;
          return;
        }
        store.setMechanismStatus(id, "approved", "approved by the user");
        store.addEvent(store.completedIterations(), "2", "approved", `${row.name} approved by the user`, {
          id,
        });
        process.stdout.write(
          `${safeText(`approved ${id}: the run activates it at its next iteration (or when resumed)`)}\n`,
        );
      } finally {
        store.close();
      }
    });
}
