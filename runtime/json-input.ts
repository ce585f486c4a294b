// Guards for JSON read from outside (config files, LLM replies): JSON.parse makes "__proto__" an
// own key, which a later spread or merge would turn into a prototype. Such keys are refused.

const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** The dotted path of the first prototype key in `value`, or null when there is none. */
export function findPrototypeKey(value: unknown, at = ""): string | null {
  if (typeof value !== "object" || value === null) return null;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  for (const [key, child] of entries) {
    const here = at === "" ? key : `${at}.${key}`;
    if (!Array.isArray(value) && PROTOTYPE_KEYS.has(key)) return here;
    const found = findPrototypeKey(child, here);
    if (found !== null) return found;
  }
  return null;
}
