// AST lint of a mechanism (TypeScript AST from ts-morph's bundled compiler). A helpful early error
// with a position, not the security boundary: the isolate is. Runs in the sandbox child.
import { ts } from "ts-morph";
import type { SandboxError } from "./types.ts";

export const API_MODULE = "bilevel/mechanism-api";

const FORBIDDEN_NAMES: ReadonlyMap<string, string> = new Map([
  ["eval", "eval is not allowed"],
  ["Function", "the Function constructor is not allowed"],
  ["require", "require is not allowed: mechanisms import nothing but types"],
  ["globalThis", "globalThis is not allowed: use only ctx"],
  ["global", "global is not allowed: use only ctx"],
  ["self", "self is not allowed: use only ctx"],
  ["window", "window is not allowed: use only ctx"],
  ["process", "process is not available in the sandbox"],
  ["module", "module is not available in the sandbox"],
  ["exports", "exports is not available in the sandbox: use `export default`"],
  ["WebAssembly", "WebAssembly is not allowed"],
  ["Atomics", "Atomics is not allowed"],
  ["SharedArrayBuffer", "SharedArrayBuffer is not allowed"],
  ["Reflect", "Reflect is not allowed"],
  ["arguments", "`arguments` is not allowed: use rest parameters"],
  ["Intl", "Intl is not available in the sandbox"],
  ["__bilevel_factory", "sandbox internals are not accessible"],
  ["__bilevel_invoke", "sandbox internals are not accessible"],
  ["__bilevel_inspect", "sandbox internals are not accessible"],
]);

const FORBIDDEN_MEMBERS: ReadonlyMap<string, string> = new Map([
  ["constructor", "access to .constructor is not allowed"],
  ["__proto__", "access to __proto__ is not allowed"],
  ["__defineGetter__", "__defineGetter__ is not allowed"],
  ["__defineSetter__", "__defineSetter__ is not allowed"],
  ["__lookupGetter__", "__lookupGetter__ is not allowed"],
  ["__lookupSetter__", "__lookupSetter__ is not allowed"],
  ["caller", "access to .caller is not allowed"],
  ["callee", "access to .callee is not allowed"],
]);

/** Types whose members may only be reached by literal names (ctx and its capability objects). */
const CAPABILITY_TYPES = new Set(["TabuApi", "BanditApi", "SpaceApi", "CapabilityNotDeclared", "Context"]);

export function lintMechanism(sf: ts.SourceFile, checker: ts.TypeChecker): SandboxError[] {
  const errors: SandboxError[] = [];
  const report = (node: ts.Node, message: string): void => {
    if (errors.length >= 50) return;
    const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    errors.push({ stage: "lint", code: "forbidden-syntax", message, line: line + 1, column: character + 1 });
  };

  if (
    sf.referencedFiles.length > 0 ||
    sf.typeReferenceDirectives.length > 0 ||
    sf.libReferenceDirectives.length > 0
  ) {
    report(sf, "triple-slash reference directives are not allowed");
  }
  const directives: unknown = Reflect.get(sf, "commentDirectives");
  if (Array.isArray(directives) && directives.length > 0) {
    errors.push(
      at(
        sf,
        (directives[0] as { range: { pos: number } }).range.pos,
        "@ts-ignore / @ts-expect-error are not allowed: fix the type error",
      ),
    );
  }
  if (/^\s*\/\/\s*@ts-nocheck/m.test(sf.text)) report(sf, "@ts-nocheck is not allowed");

  const visit = (node: ts.Node): void => {
    check(node);
    ts.forEachChild(node, visit);
  };

  const check = (node: ts.Node): void => {
    switch (node.kind) {
      case ts.SyntaxKind.ImportDeclaration: {
        const decl = node as ts.ImportDeclaration;
        const from = ts.isStringLiteral(decl.moduleSpecifier) ? decl.moduleSpecifier.text : "";
        if (from !== API_MODULE)
          report(decl, `imports are limited to types from "${API_MODULE}" (found "${from}")`);
        else if (!decl.importClause?.isTypeOnly)
          report(decl, `use \`import type { … } from "${API_MODULE}"\``);
        return;
      }
      case ts.SyntaxKind.ImportEqualsDeclaration:
        report(node, "`import … = require()` is not allowed");
        return;
      case ts.SyntaxKind.ExportDeclaration:
        if ((node as ts.ExportDeclaration).moduleSpecifier)
          report(node, "re-exports from other modules are not allowed");
        return;
      case ts.SyntaxKind.ExportAssignment:
        if ((node as ts.ExportAssignment).isExportEquals)
          report(node, "`export =` is not allowed: use `export default`");
        return;
      case ts.SyntaxKind.CallExpression:
        if ((node as ts.CallExpression).expression.kind === ts.SyntaxKind.ImportKeyword) {
          report(node, "dynamic import() is not allowed");
        }
        return;
      case ts.SyntaxKind.MetaProperty:
        if ((node as ts.MetaProperty).keywordToken === ts.SyntaxKind.ImportKeyword)
          report(node, "import.meta is not allowed");
        return;
      case ts.SyntaxKind.WithStatement:
        report(node, "`with` is not allowed");
        return;
      case ts.SyntaxKind.DebuggerStatement:
        report(node, "`debugger` is not allowed");
        return;
      case ts.SyntaxKind.ModuleDeclaration:
        if (
          (node as ts.ModuleDeclaration).name.kind === ts.SyntaxKind.Identifier &&
          (node as ts.ModuleDeclaration).name.text === "global"
        ) {
          report(node, "`declare global` is not allowed");
        }
        break;
      case ts.SyntaxKind.DeclareKeyword:
        report(
          node.parent,
          "ambient `declare` declarations are not allowed: the sandbox has only what the API declares",
        );
        return;
      case ts.SyntaxKind.ThisKeyword:
        if (isTopLevelThis(node)) report(node, "`this` at the top level is not allowed");
        return;
      case ts.SyntaxKind.Identifier:
        checkIdentifier(node as ts.Identifier);
        return;
      case ts.SyntaxKind.PropertyAccessExpression: {
        const name = (node as ts.PropertyAccessExpression).name.text;
        const why = FORBIDDEN_MEMBERS.get(name);
        if (why) report((node as ts.PropertyAccessExpression).name, why);
        return;
      }
      case ts.SyntaxKind.ElementAccessExpression:
        checkElementAccess(node as ts.ElementAccessExpression);
        return;
      case ts.SyntaxKind.StringLiteral:
      case ts.SyntaxKind.NoSubstitutionTemplateLiteral: {
        const text = (node as ts.StringLiteral).text;
        if (text === "constructor" || text === "__proto__")
          report(node, `the string "${text}" is not allowed`);
        return;
      }
      default:
        return;
    }
  };

  const checkIdentifier = (id: ts.Identifier): void => {
    const why = FORBIDDEN_NAMES.get(id.text);
    if (why === undefined && !FORBIDDEN_MEMBERS.has(id.text)) return;
    const parent = id.parent;
    // Member names and property keys are not references to the global of that name.
    if (ts.isPropertyAccessExpression(parent) && parent.name === id) return;
    if (ts.isQualifiedName(parent) && parent.right === id) return;
    if (
      (ts.isPropertyAssignment(parent) ||
        ts.isMethodDeclaration(parent) ||
        ts.isPropertySignature(parent) ||
        ts.isMethodSignature(parent) ||
        ts.isPropertyDeclaration(parent) ||
        ts.isGetAccessorDeclaration(parent) ||
        ts.isSetAccessorDeclaration(parent)) &&
      parent.name === id
    ) {
      if (id.text === "__proto__") report(id, "__proto__ keys are not allowed");
      return;
    }
    if (why !== undefined) report(id, why);
  };

  const checkElementAccess = (node: ts.ElementAccessExpression): void => {
    const arg = node.argumentExpression;
    if (ts.isStringLiteralLike(arg) || ts.isNumericLiteral(arg)) return; // the literal itself is checked separately
    // Look through casts too: `(ctx.tabu as any)[k]` is still the capability object.
    for (let e: ts.Expression = node.expression; ; e = (e as ts.AsExpression).expression) {
      const type = checker.getTypeAtLocation(e);
      const name = (type.aliasSymbol ?? type.getSymbol())?.getName();
      if (name !== undefined && CAPABILITY_TYPES.has(name)) {
        report(node, `computed access on ${name} must use a literal member name`);
        return;
      }
      if (
        !ts.isParenthesizedExpression(e) &&
        !ts.isAsExpression(e) &&
        !ts.isSatisfiesExpression(e) &&
        !ts.isNonNullExpression(e) &&
        !ts.isTypeAssertionExpression(e)
      ) {
        return;
      }
    }
  };

  visit(sf);
  return errors;

  function at(file: ts.SourceFile, pos: number, message: string): SandboxError {
    const { line, character } = file.getLineAndCharacterOfPosition(Math.max(0, pos));
    return { stage: "lint", code: "forbidden-syntax", message, line: line + 1, column: character + 1 };
  }
}

function isTopLevelThis(node: ts.Node): boolean {
  for (let p = node.parent; p !== undefined; p = p.parent) {
    if (ts.isFunctionLike(p) && !ts.isArrowFunction(p)) return false;
    if (ts.isClassLike(p)) return false;
  }
  return true;
}
