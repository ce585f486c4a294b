// Error text that crosses back to the host (and into run logs) must not reveal host paths. It may
// hold JSON pointers into the mechanism's own data ("/value/reason must be string", "/seen is a
// Set"): those look like paths but describe what the mechanism wrote, and are the useful part of
// the message. So only what can be a host location is removed: this process's own directories (the
// code, the working directory, home, temp, Node's install), URLs and stack-frame shaped file names,
// node_modules, and paths under the usual system roots.
import os from "node:os";
import path from "node:path";

const PATH_CHARS = String.raw`[^\s'"\x60()<>,;]*`;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function hostDirectories(): string[] {
  const candidates = [
    path.resolve(import.meta.dirname, ".."),
    process.cwd(),
    os.homedir(),
    os.tmpdir(),
    path.dirname(path.dirname(process.execPath)),
  ];
  // Longest first, so that a directory inside another is replaced whole.
  return [...new Set(candidates)].filter((d) => d.length > 1).sort((a, b) => b.length - a.length);
}

/** Made on first use: in the compiler's snapshot, in the process that uses them (its directories). */
let patterns: readonly RegExp[] | null = null;

const makePatterns = (): readonly RegExp[] => [
  ...hostDirectories().map((d) => new RegExp(`${escapeRegExp(d)}(?![\\w.@+-])${PATH_CHARS}`, "g")),
  /file:\/\/\S+/g,
  /node:internal\S*/g,
  /\S*node_modules\S*/g,
  // Source and binary files, as in stack frames (/x/y.ts:12:3).
  /(?:\/[\w.@+-]+)+\.(?:[cm]?[jt]sx?|json|node|so(?:\.\d+)*)(?::\d+)*/g,
  // The usual system roots, two segments or more (one, like "/tmp", says nothing).
  /\/(?:home|root|usr|opt|tmp|var|srv|mnt|nix|Users|private|Volumes|proc)(?:\/[\w.@+-]+)+/g,
];

/** Never let a host path or URL cross back; keep JSON pointers into the mechanism's data. */
export function sanitize(message: string): string {
  let out = message;
  patterns ??= makePatterns();
  for (const pattern of patterns) out = out.replace(pattern, "<path>");
  return out.slice(0, 2000);
}
