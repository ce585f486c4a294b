// Names of tabu lists, bandits, arms and parameters are the mechanism's data: any string is a valid
// name, "toString", "constructor", "hasOwnProperty" and "__proto__" included. A plain lookup would
// find Object.prototype's members for them (a reward added to a function gives NaN), and assigning
// "__proto__" would set a prototype instead of an entry. So lookups go through Object.hasOwn, and
// entries are made by spread and computed keys, which always define own properties.

/** The entry `key` of `dict` if it is its own, else undefined. */
export function own<T>(dict: { readonly [key: string]: T }, key: string): T | undefined {
  return Object.hasOwn(dict, key) ? dict[key] : undefined;
}

/** A copy of `dict` with `key` set to `value` (an own property, whatever the key). */
export function withEntry<T>(
  dict: { readonly [key: string]: T },
  key: string,
  value: T,
): { [key: string]: T } {
  return { ...dict, [key]: value };
}
