// Error text that crosses back to the host (and into run logs) must not reveal host paths.

/** Never let a host path or URL cross back. */
export function sanitize(message: string): string {
  return message
    .replace(/file:\/\/\S+/g, "<path>")
    .replace(/(?:\/[\w.@+-]+){2,}/g, "<path>")
    .slice(0, 2000);
}
