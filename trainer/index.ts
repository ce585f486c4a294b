// The trainer's public TypeScript API (see docs/trainer.md).

export { checkConstraints, parseConstraint } from "./constraints.ts";
export { ExternalTrainer, type ExternalTrainerOptions, parseSummary, rewriteConstants } from "./external.ts";
export { findPython } from "./python.ts";
export {
  deriveSpec,
  discoverScript,
  discoverSource,
  type ParamDeclaration,
  type ScriptConstant,
  type ScriptInfo,
  scriptSearchSpace,
} from "./script-space.ts";
export {
  checkValue,
  defaultConfig,
  loadSearchSpace,
  parseAssignment,
  parseNumber,
  SEARCH_SPACE_PATH,
  validateConfig,
} from "./search-space.ts";
export {
  EXIT_CODES,
  parseResult,
  TorchTrainer,
  type TorchTrainerOptions,
  trainerEnv,
  validateRequest,
} from "./torch-trainer.ts";
export type * from "./types.ts";
