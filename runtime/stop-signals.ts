// The signals that stop a run or a study cleanly (the trials in flight killed, the store
// consistent, a resume continues), how the record names them, and the exit status each gives.
// SIGHUP is among them: Node undoes nohup's ignoring of it, so a closed terminal would otherwise
// kill the process outright.
import os from "node:os";

export const STOP_SIGNALS = {
  SIGINT: "Ctrl-C (SIGINT)",
  SIGTERM: "SIGTERM",
  SIGHUP: "SIGHUP (hang-up: e.g. its terminal closed)",
} as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/** The stop signals, to install and remove a handler for each. */
export const STOP_SIGNAL_NAMES = Object.keys(STOP_SIGNALS) as StopSignal[];

/** The exit status of a process stopped by `signal`: 128 + its number (130, 143, 129). */
export function signalExit(signal: StopSignal): number {
  return 128 + os.constants.signals[signal];
}

/** After a hang-up the terminal is gone: writes to it fail (EIO), and must not end a clean stop. */
export function quietOutput(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
}

/** The stop signal whose clean stop gave exit status `status` (130, 143, 129), or null. */
export function stoppedBy(status: number | null): StopSignal | null {
  return STOP_SIGNAL_NAMES.find((signal) => signalExit(signal) === status) ?? null;
}
