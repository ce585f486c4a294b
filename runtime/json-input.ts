// Guards for JSON read from outside (config files, LLM replies): JSON.parse makes "__proto__" an
// own key, which a later spread or merge would turn into a prototype, so such keys are refused;
// and nesting is bounded, so that walking the value cannot exhaust the stack.

const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);
export const MAX_JSON_DEPTH = 64;

/** What is wrong with `value` as input ("PATH: why"), or null. Iterative: any depth is safe. */
export function jsonInputProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): string | null {
  const stack: { value: unknown; at: string; depth: number }[] = [{ value, at: "", depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop();
    if (!item || typeof item.value !== "object" || item.value === null) continue;
    if (item.depth >= maxDepth) return `${item.at || "(top level)"}: nested deeper than ${maxDepth} levels`;
    const isArray = Array.isArray(item.value);
    for (const [key, child] of Object.entries(item.value)) {
      const at = item.at === "" ? key : `${item.at}.${key}`;
      if (!isArray && PROTOTYPE_KEYS.has(key)) return `${at}: a prototype key is not allowed`;
      stack.push({ value: child, at, depth: item.depth + 1 });
    }
  }
  return null;
}
