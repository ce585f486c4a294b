// Normalised coordinates live in sandbox/param-scale.ts, the one implementation for the project:
// the sandbox's space capability needs them and sandbox/ must not import runtime/. This module
// keeps runtime/'s import path stable.
export { clampValue, fromUnit, fullConfig, spaceKey, stepNumber, toUnit } from "../sandbox/param-scale.ts";
