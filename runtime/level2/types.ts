// The Level 2 interface: one research session yields a validated mechanism, a rejected one, or none.
import type { ParamSpec } from "../../mechanism-api/index.d.ts";
import type { DryRunTrace, ValidationReport } from "../../sandbox/types.ts";
import type { MechanismOrigin, TrialRow } from "../store.ts";

/** A Level 2 candidate: validated (ready to activate) or rejected, with the reason. */
export type ResearchResult =
  | {
      readonly status: "validated";
      readonly origin: MechanismOrigin;
      readonly name: string;
      /** The name the research session designed, when it differs in kind from the code's manifest. */
      readonly designName?: string;
      readonly source: string;
      readonly report: ValidationReport;
    }
  | {
      readonly status: "rejected";
      readonly origin: MechanismOrigin;
      readonly name: string;
      readonly designName?: string;
      readonly source: string;
      readonly reason: string;
      readonly report: ValidationReport | null;
    }
  | { readonly status: "none"; readonly reason: string };

/** Level 2: one research session (LLM-generated code, or a pick from the built-in library offline). */
export interface Researcher {
  readonly kind: "llm" | "library";
  research(input: {
    iteration: number;
    trace: DryRunTrace;
    trials: readonly TrialRow[];
    params: readonly ParamSpec[];
    active: readonly { name: string; description: string; hooks: readonly string[] }[];
    tried: readonly string[];
    validate: (source: string) => Promise<ValidationReport>;
  }): Promise<ResearchResult>;
}
