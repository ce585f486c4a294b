// Compile a mechanism: one long-lived in-memory ts-morph Project (pinned options, the API as an
// in-memory module), type-check, lint, extract the manifest statically, transpile to a CommonJS
// script body the isolate evaluates. Runs in the compiler process (compiler-server.ts): a
// pathological file can only hang or crash that process, which the host kills on its deadline.
import { Project, ts } from "ts-morph";
import type { CapabilityName, HookName, Manifest } from "../mechanism-api/index.d.ts";
import { manifestSchema } from "../mechanism-api/schemas.ts";
import { apiModuleText, declaredCapabilities, newerApiVersion, unwrap } from "./api-module.ts";
import { describeDiagnostic, position } from "./diagnostics.ts";
import { sha256 } from "./hash.ts";
import { API_MODULE, lintMechanism } from "./lint.ts";
import type { CompiledMechanism, SandboxError } from "./types.ts";
import { validator } from "./validation.ts";

const API_PATH = "/bilevel/mechanism-api.d.ts";
const FILE_PATH = "/mechanism/mechanism.ts";
const HOOKS: readonly HookName[] = ["init", "guide", "suggest", "filter", "observe"];
const MAX_ERRORS = 20;

const isManifest = validator<Manifest>(manifestSchema);

export const COMPILER_OPTIONS: ts.CompilerOptions = {
  strict: true,
  lib: ["lib.es2022.d.ts"],
  types: [],
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  noEmit: false,
  skipLibCheck: true,
  allowJs: false,
  noImplicitOverride: true,
  // `ctx.history[i]` may be past the end: make the mechanism say what happens then.
  noUncheckedIndexedAccess: true,
  paths: { [API_MODULE]: [API_PATH] },
};

/** What the emitted JS is: a CommonJS module body (the child wraps it as a factory). */
const EMIT_OPTIONS: ts.CompilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  sourceMap: false,
  removeComments: false,
  inlineSourceMap: false,
};

export type CompileResult =
  | { ok: true; mechanism: CompiledMechanism; compileMs: number; lintMs: number }
  | { ok: false; errors: SandboxError[]; compileMs: number; lintMs: number };

let project: Project | null = null;
let apiDeclared: string | null = null;

/** The project, with the API module typed for `declared` (null: every capability). */
function getProject(declared: readonly CapabilityName[] | null): Project {
  project ??= new Project({
    useInMemoryFileSystem: true,
    skipAddingFilesFromTsConfig: true,
    compilerOptions: COMPILER_OPTIONS,
  });
  const key = declared === null ? null : declared.join(",");
  if (project.getSourceFile(API_PATH) === undefined || key !== apiDeclared) {
    project.createSourceFile(API_PATH, apiModuleText(declared), { overwrite: true });
    apiDeclared = key;
  }
  return project;
}

export function compileMechanism(source: string): CompileResult {
  const t0 = performance.now();
  const p = getProject(null);
  const file = p.createSourceFile(FILE_PATH, source, { overwrite: true });
  getProject(declaredCapabilities(file.compilerNode));
  const program = p.getProgram().compilerObject;
  const sf = program.getSourceFile(FILE_PATH);
  if (!sf) throw new Error("the compiler lost the mechanism file");
  const syntax = program.getSyntacticDiagnostics(sf);
  if (syntax.length > 0) {
    const errors = syntax.slice(0, MAX_ERRORS).map((d) => describeDiagnostic(d, "syntax-error", null));
    return { ok: false, errors, compileMs: performance.now() - t0, lintMs: 0 };
  }
  const semantic = [...program.getSemanticDiagnostics(sf), ...program.getGlobalDiagnostics()].filter(
    (d) => d.category === ts.DiagnosticCategory.Error && (d.file === undefined || d.file === sf),
  );
  const checker = program.getTypeChecker();
  const typeErrors = semantic.slice(0, MAX_ERRORS).map((d) => describeDiagnostic(d, "type-error", checker));
  const compileMs = performance.now() - t0;

  const t1 = performance.now();
  const lintErrors = lintMechanism(sf, checker);
  const extracted = extractManifest(sf, checker);
  const lintMs = performance.now() - t1;
  // A file written for a newer API is checked against the wrong contract: only that is reported.
  const errors =
    "errors" in extracted && extracted.newerApi
      ? extracted.errors
      : [...typeErrors, ...lintErrors, ...("errors" in extracted ? extracted.errors : [])];
  if (errors.length > 0 || !("manifest" in extracted)) {
    // In source order, so an author fixes them top-down in one round (then capped: the earliest).
    const ordered = [...errors].sort(
      (a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
    );
    return { ok: false, errors: ordered.slice(0, MAX_ERRORS), compileMs, lintMs };
  }
  const js = ts.transpileModule(source, {
    compilerOptions: EMIT_OPTIONS,
    fileName: "mechanism.ts",
    reportDiagnostics: false,
  }).outputText;
  const mechanism: CompiledMechanism = {
    manifest: extracted.manifest,
    source,
    js,
    sourceHash: sha256(source),
    jsHash: sha256(js),
  };
  return { ok: true, mechanism, compileMs: compileMs + (performance.now() - t1 - lintMs), lintMs };
}

/**
 * The source map's mappings of `js` (the emitted JS of `source`), to map runtime positions back to
 * the TypeScript source; null if the source no longer emits exactly that JS.
 */
export function mappingsFor(source: string, js: string): string | null {
  const out = sourceMapFor(source);
  const parsed: unknown = JSON.parse(out.map);
  const mappings = (parsed as { mappings?: unknown }).mappings;
  return out.js.trimEnd() === js.trimEnd() && typeof mappings === "string" ? mappings : null;
}

/** Source map of the emitted JS, to map runtime positions back to the TypeScript source. */
export function sourceMapFor(source: string): { js: string; map: string } {
  const out = ts.transpileModule(source, {
    compilerOptions: { ...EMIT_OPTIONS, sourceMap: true },
    fileName: "mechanism.ts",
    reportDiagnostics: false,
  });
  // transpileModule appends a sourceMappingURL comment when sourceMap is on; the stored JS has none.
  const js = out.outputText.replace(/\/\/# sourceMappingURL=.*$/, "");
  return { js, map: out.sourceMapText ?? "" };
}

// ---- manifest extraction: the default export must be an object literal with a literal manifest ----

type Extracted = { manifest: Manifest } | { errors: SandboxError[]; newerApi?: true };

/** The manifest's `name` property (for a position), or the manifest itself. */
function manifestProperty(manifest: ts.Expression, name: string): ts.Node {
  if (!ts.isObjectLiteralExpression(manifest)) return manifest;
  const prop = manifest.properties.find(
    (p) =>
      p.name !== undefined && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)) && p.name.text === name,
  );
  return prop ?? manifest;
}

function lintError(
  sf: ts.SourceFile,
  node: ts.Node,
  code: SandboxError["code"],
  message: string,
): SandboxError {
  return { stage: "lint", code, message, ...position(sf, node.getStart(sf)) };
}

function extractManifest(sf: ts.SourceFile, checker: ts.TypeChecker): Extracted {
  const exportDefault = sf.statements.find(
    (s): s is ts.ExportAssignment => ts.isExportAssignment(s) && !s.isExportEquals,
  );
  if (!exportDefault) {
    const fnOrClass = sf.statements.find(
      (s) =>
        (ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s)) &&
        ts.getModifiers(s)?.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword),
    );
    const node = fnOrClass ?? sf;
    return {
      errors: [
        lintError(
          sf,
          node,
          "invalid-manifest",
          "the default export must be an object literal with a `manifest`",
        ),
      ],
    };
  }
  let expr = unwrap(exportDefault.expression);
  if (ts.isIdentifier(expr)) {
    const symbol = checker.getSymbolAtLocation(expr);
    const decl = symbol?.valueDeclaration;
    if (decl && ts.isVariableDeclaration(decl) && decl.initializer) expr = unwrap(decl.initializer);
  }
  if (!ts.isObjectLiteralExpression(expr)) {
    return {
      errors: [
        lintError(
          sf,
          expr,
          "invalid-manifest",
          "the default export must be an object literal (a `const` of one is fine)",
        ),
      ],
    };
  }
  const errors: SandboxError[] = [];
  let manifestNode: ts.Expression | undefined;
  const defined = new Map<HookName, ts.Node>();
  for (const prop of expr.properties) {
    if (ts.isSpreadAssignment(prop)) {
      errors.push(lintError(sf, prop, "invalid-manifest", "spreads are not allowed in the default export"));
      continue;
    }
    const name =
      prop.name && (ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name)) ? prop.name.text : null;
    if (name === null) {
      errors.push(lintError(sf, prop, "invalid-manifest", "the default export's keys must be plain names"));
      continue;
    }
    if (name === "manifest") {
      if (ts.isPropertyAssignment(prop)) manifestNode = prop.initializer;
      else
        errors.push(
          lintError(sf, prop, "invalid-manifest", "`manifest` must be a property with a literal value"),
        );
    } else if ((HOOKS as readonly string[]).includes(name)) {
      defined.set(name as HookName, prop);
    }
  }
  if (errors.length > 0) return { errors };
  if (!manifestNode)
    return { errors: [lintError(sf, expr, "invalid-manifest", "the default export has no `manifest`")] };
  const value = literalValue(manifestNode);
  if ("error" in value) return { errors: [lintError(sf, value.node, "invalid-manifest", value.error)] };
  const newer = newerApiVersion(value.value);
  if (newer !== null)
    return {
      errors: [lintError(sf, manifestProperty(manifestNode, "apiVersion"), "invalid-manifest", newer)],
      newerApi: true,
    };
  if (!isManifest(value.value)) {
    return { errors: [lintError(sf, manifestNode, "invalid-manifest", `manifest: ${isManifest.explain()}`)] };
  }
  const manifest = value.value;
  for (const hook of manifest.hooks) {
    if (!defined.has(hook)) {
      errors.push(
        lintError(sf, manifestNode, "missing-hook", `the manifest declares ${hook} but it is not defined`),
      );
    }
  }
  for (const [hook, node] of defined) {
    if (!manifest.hooks.includes(hook)) {
      errors.push(
        lintError(sf, node, "missing-hook", `${hook} is defined but the manifest does not declare it`),
      );
    }
  }
  return errors.length > 0 ? { errors } : { manifest };
}

type Literal = { value: unknown } | { error: string; node: ts.Node };

function literalValue(node: ts.Expression): Literal {
  const e = unwrap(node);
  if (ts.isStringLiteralLike(e)) return { value: e.text };
  if (ts.isNumericLiteral(e)) return { value: Number(e.text) };
  if (e.kind === ts.SyntaxKind.TrueKeyword) return { value: true };
  if (e.kind === ts.SyntaxKind.FalseKeyword) return { value: false };
  if (
    ts.isPrefixUnaryExpression(e) &&
    e.operator === ts.SyntaxKind.MinusToken &&
    ts.isNumericLiteral(e.operand)
  ) {
    return { value: -Number(e.operand.text) };
  }
  if (ts.isArrayLiteralExpression(e)) {
    const out: unknown[] = [];
    for (const item of e.elements) {
      const v = literalValue(item);
      if ("error" in v) return v;
      out.push(v.value);
    }
    return { value: out };
  }
  if (ts.isObjectLiteralExpression(e)) {
    const out: Record<string, unknown> = {};
    for (const prop of e.properties) {
      if (!ts.isPropertyAssignment(prop) || !(ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name))) {
        return {
          error: "the manifest must be a plain literal (no spreads, methods or computed keys)",
          node: prop,
        };
      }
      const v = literalValue(prop.initializer);
      if ("error" in v) return v;
      out[prop.name.text] = v.value;
    }
    return { value: out };
  }
  return { error: "the manifest must be written as a literal (strings, numbers, arrays)", node: e };
}
