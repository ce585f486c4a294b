// The contract itself: every exported member of index.d.ts is documented, the JSON Schemas agree
// with the declarations, and the version constant with the version type.
import path from "node:path";
import { Node, Project, type SourceFile, type Type } from "ts-morph";
import * as contract from "../../mechanism-api/schemas.ts";
import { API_VERSION } from "../../mechanism-api/version.ts";
import { hookContextDataSchema } from "../../sandbox/schemas.ts";

const project = new Project({ skipAddingFilesFromTsConfig: true, compilerOptions: { strict: true } });
const api: SourceFile = project.addSourceFileAtPath(
  path.join(import.meta.dirname, "../../mechanism-api/index.d.ts"),
);

/** Exceptions to "every member is documented": none (keep it that way). */
const UNDOCUMENTED_FOR_NOW: readonly string[] = [];

function hasDoc(node: Node): boolean {
  return Node.isJSDocable(node) && node.getJsDocs().some((d) => d.getDescription().trim().length > 0);
}

/** Every exported declaration and every member of an exported interface, by name. */
function members(): { name: string; documented: boolean }[] {
  const out: { name: string; documented: boolean }[] = [];
  for (const [name, decls] of api.getExportedDeclarations()) {
    for (const decl of decls) {
      out.push({ name, documented: hasDoc(decl) });
      if (!Node.isInterfaceDeclaration(decl)) continue;
      for (const m of decl.getMembers()) {
        const member = Node.isPropertySignature(m) || Node.isMethodSignature(m) ? m.getName() : m.getText();
        out.push({ name: `${name}.${member}`, documented: hasDoc(m) });
      }
    }
  }
  return out;
}

test("every exported member of index.d.ts has a doc comment (the list of exceptions is exact)", () => {
  const all = members();
  expect(all.length).toBeGreaterThan(90);
  const undocumented = all.filter((m) => !m.documented).map((m) => m.name);
  expect(undocumented.sort()).toEqual([...UNDOCUMENTED_FOR_NOW].sort());
});

test("the version constant is the version type", () => {
  const type = api.getTypeAliasOrThrow("ApiVersion").getType();
  expect(type.getLiteralValue()).toBe(API_VERSION);
  expect(contract.manifestSchema.properties.apiVersion.maximum).toBe(API_VERSION);
});

// ---- schemas.ts agrees with index.d.ts

interface ObjectSchema {
  readonly properties: Readonly<Record<string, unknown>>;
  readonly required: readonly string[];
}

/** The interface's properties and which are required, as a schema would list them. */
function shape(name: string): { properties: string[]; required: string[] } {
  const props = api.getInterfaceOrThrow(name).getProperties();
  return {
    properties: props.map((p) => p.getName()).sort(),
    required: props
      .filter((p) => !p.hasQuestionToken())
      .map((p) => p.getName())
      .sort(),
  };
}

function literals(type: Type): (string | number)[] {
  const parts = type.isUnion() ? type.getUnionTypes() : [type];
  return parts.map((t) => t.getLiteralValue() as string | number).sort();
}

const propertyType = (iface: string, prop: string): Type =>
  api.getInterfaceOrThrow(iface).getPropertyOrThrow(prop).getType();

test.each<[string, ObjectSchema]>([
  ["ParamSpec", contract.paramSpecSchema],
  ["Change", contract.changeSchema],
  ["Proposal", contract.proposalSchema],
  ["Trial", contract.trialSchema],
  ["Suggestion", contract.suggestionSchema],
  ["Manifest", contract.manifestSchema],
  ["Acceptance", contract.acceptanceSchema],
  ["PendingTrial", contract.pendingTrialSchema],
])("%s: the schema has the interface's properties, the same ones required", (name, schema) => {
  expect({
    properties: Object.keys(schema.properties).sort(),
    required: [...schema.required].sort(),
  }).toEqual(shape(name));
});

test("the enumerations agree", () => {
  const alias = (name: string) => literals(api.getTypeAliasOrThrow(name).getType());
  expect(alias("TrialStatus")).toEqual([...contract.trialSchema.properties.status.enum].sort());
  expect(alias("HookName")).toEqual([...contract.hookNameSchema.enum].sort());
  expect(alias("CapabilityName")).toEqual([...contract.capabilityNameSchema.enum].sort());
  expect(literals(propertyType("ParamSpec", "kind"))).toEqual(
    [...contract.paramSpecSchema.properties.kind.enum].sort(),
  );
  expect(literals(propertyType("Proposal", "source"))).toEqual(
    [...contract.proposalSchema.properties.source.enum].sort(),
  );
  expect(literals(propertyType("Acceptance", "rule"))).toEqual(
    [...contract.acceptanceSchema.properties.rule.enum].sort(),
  );
});

test("FilterVerdict: each variant has the schema's properties", () => {
  const variants = api
    .getTypeAliasOrThrow("FilterVerdict")
    .getType()
    .getUnionTypes()
    .map((t) => ({
      verdict: t.getPropertyOrThrow("verdict").getValueDeclarationOrThrow().getType().getLiteralValue(),
      properties: t
        .getProperties()
        .map((p) => p.getName())
        .sort(),
    }));
  const schemas = contract.filterVerdictSchema.oneOf.map((s) => ({
    verdict: s.properties.verdict.const,
    properties: Object.keys(s.properties).sort(),
  }));
  const byVerdict = (a: { verdict: unknown }, b: { verdict: unknown }) =>
    String(a.verdict).localeCompare(String(b.verdict));
  expect(variants.sort(byVerdict)).toEqual(schemas.sort(byVerdict));
});

test("Context's data members are what the host sends (the call's context, less the seed)", () => {
  const context = api.getInterfaceOrThrow("Context");
  const data = context
    .getProperties()
    .map((p) => p.getName())
    .filter((n) => !["state", "tabu", "bandit", "space"].includes(n));
  const sent = Object.keys(hookContextDataSchema.properties).filter((n) => n !== "seed");
  expect(data.sort()).toEqual(sent.sort());
  expect(context.getMethods().map((m) => m.getName())).toEqual(["random", "log"]);
});
