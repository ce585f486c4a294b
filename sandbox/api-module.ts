// The API module a mechanism compiles against, made for its file: the compiler reads the manifest's
// capabilities from the syntax (type-checking depends on them) and narrows `DeclaredCapability` in
// index.d.ts to them, so that `Context` offers only those; and the manifest's API version is checked
// against the runtime's.
import { readFileSync } from "node:fs";
import path from "node:path";
import { ts } from "ts-morph";
import type { CapabilityName } from "../mechanism-api/index.d.ts";
import { capabilityNameSchema } from "../mechanism-api/schemas.ts";
import { API_VERSION } from "../mechanism-api/version.ts";

const API_TEXT = readFileSync(path.join(import.meta.dirname, "../mechanism-api/index.d.ts"), "utf8");
/** The line of index.d.ts that is rewritten per file. */
const DECLARED_LINE = "export type DeclaredCapability = CapabilityName;";
if (!API_TEXT.includes(DECLARED_LINE)) throw new Error(`mechanism-api/index.d.ts lacks "${DECLARED_LINE}"`);

/** index.d.ts with `DeclaredCapability` narrowed to `declared` (null: every capability, as written). */
export function apiModuleText(declared: readonly CapabilityName[] | null): string {
  if (declared === null) return API_TEXT;
  const union = declared.map((c) => JSON.stringify(c)).join(" | ") || "never";
  return API_TEXT.replace(DECLARED_LINE, `export type DeclaredCapability = ${union};`);
}

/**
 * The manifest's capabilities, read from the syntax alone (before type-checking, which depends on
 * them); null when they cannot be read so simply, and then extractManifest reports why.
 */
export function declaredCapabilities(sf: ts.SourceFile): CapabilityName[] | null {
  const exported = sf.statements.find((s): s is ts.ExportAssignment => ts.isExportAssignment(s));
  let expr = exported ? unwrap(exported.expression) : undefined;
  if (expr && ts.isIdentifier(expr)) {
    const name = expr.text;
    const decl = sf.statements
      .filter(ts.isVariableStatement)
      .flatMap((s) => [...s.declarationList.declarations])
      .find((d) => ts.isIdentifier(d.name) && d.name.text === name);
    expr = decl?.initializer ? unwrap(decl.initializer) : undefined;
  }
  const manifest = expr && ts.isObjectLiteralExpression(expr) ? property(expr, "manifest") : undefined;
  const list =
    manifest && ts.isObjectLiteralExpression(manifest) ? property(manifest, "capabilities") : undefined;
  if (!list || !ts.isArrayLiteralExpression(list)) return null;
  const names = list.elements.map((e) => (ts.isStringLiteralLike(e) ? e.text : null));
  const known: readonly string[] = capabilityNames;
  return names.every((n): n is CapabilityName => n !== null && known.includes(n)) ? names : null;
}

const capabilityNames: readonly CapabilityName[] = capabilityNameSchema.enum;

function property(object: ts.ObjectLiteralExpression, name: string): ts.Expression | undefined {
  for (const p of object.properties) {
    if (
      ts.isPropertyAssignment(p) &&
      (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)) &&
      p.name.text === name
    )
      return unwrap(p.initializer);
  }
  return undefined;
}

/** Why a manifest written for a later API version cannot be compiled here, or null. */
export function newerApiVersion(manifest: unknown): string | null {
  if (typeof manifest !== "object" || manifest === null || !("apiVersion" in manifest)) return null;
  const asked = manifest.apiVersion;
  if (typeof asked !== "number" || asked <= API_VERSION) return null;
  return `manifest.apiVersion ${asked}: the mechanism is written for mechanism API version ${asked}, but this runtime has version ${API_VERSION}; use a newer bilevel or write it for version ${API_VERSION}`;
}

/** The expression inside parentheses, `satisfies`, `as`, `<T>` and `!`. */
export function unwrap(expr: ts.Expression): ts.Expression {
  let e = expr;
  while (
    ts.isParenthesizedExpression(e) ||
    ts.isSatisfiesExpression(e) ||
    ts.isAsExpression(e) ||
    ts.isTypeAssertionExpression(e) ||
    ts.isNonNullExpression(e)
  ) {
    e = e.expression;
  }
  return e;
}
