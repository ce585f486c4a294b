// Reading a mechanism's source file: one implementation for the run config (checked when it is
// resolved, before anything is created), the run (which reads it) and `mechanism check`/`test`.

/** Largest mechanism source (the sandbox refuses larger sources too). */
export const MAX_MECHANISM_BYTES = 512 * 1024;

import { readFileSync, statSync } from "node:fs";

export type MechanismFile =
  | { readonly ok: true; readonly source: string }
  | {
      readonly ok: false;
      /** missing / not-file: the path is wrong; too-large / not-text: the file is not a mechanism. */
      readonly problem: "missing" | "not-file" | "too-large" | "not-text";
      readonly message: string;
      /** The file's size in bytes, when it could be read. */
      readonly size?: number;
    };

/** The file's UTF-8 text, or why it cannot be a mechanism source. Never throws. */
export function readMechanismFile(file: string): MechanismFile {
  let size: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) return { ok: false, problem: "not-file", message: `${file} is not a file` };
    size = stat.size;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : `cannot be read (${code})`;
    return { ok: false, problem: "missing", message: `${file} ${why}` };
  }
  if (size > MAX_MECHANISM_BYTES) {
    return {
      ok: false,
      problem: "too-large",
      message: `${file} is ${size} bytes (at most ${MAX_MECHANISM_BYTES})`,
    };
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, problem: "missing", message: `${file} cannot be read (${code})` };
  }
  try {
    const source = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (source.includes("\0")) throw new Error("NUL byte");
    return { ok: true, source };
  } catch {
    return {
      ok: false,
      problem: "not-text",
      message: `${file} is not UTF-8 text (is it a TypeScript file?)`,
    };
  }
}
