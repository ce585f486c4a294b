// JSON Schemas of the capability calls' arguments (each call crosses as a JSON array of its
// arguments). Host-only wire format, so it lives with the capabilities, not in mechanism-api/.
import {
  banditSettingsSchema,
  changesSchema,
  configSchema,
  identifierSchema,
  paramValueSchema,
} from "../../mechanism-api/schemas.ts";

/** Largest |reward| bandit.reward accepts (and |initial| bandit.arms accepts). */
export const MAX_REWARD = 1e6;
/** Largest n of one space.sample or space.latinHypercube call. */
export const MAX_SAMPLE = 1000;

const listName = identifierSchema;
const configOrChanges = { anyOf: [configSchema, changesSchema] } as const;
const unitTolerance = { type: "number", minimum: 0, maximum: 1 } as const;
const paramTolerance = {
  oneOf: [
    { type: "object", required: ["unit"], additionalProperties: false, properties: { unit: unitTolerance } },
    {
      type: "object",
      required: ["ratio"],
      additionalProperties: false,
      properties: { ratio: { type: "number", minimum: 1, maximum: 1e6 } },
    },
    {
      type: "object",
      required: ["absolute"],
      additionalProperties: false,
      properties: { absolute: { type: "number", minimum: 0 } },
    },
  ],
} as const;
const tolerance = {
  anyOf: [
    unitTolerance,
    {
      type: "object",
      additionalProperties: false,
      properties: {
        default: unitTolerance,
        params: {
          type: "object",
          maxProperties: 256,
          propertyNames: identifierSchema,
          additionalProperties: paramTolerance,
        },
      },
    },
  ],
} as const;
const paramNames = { type: "array", maxItems: 256, items: identifierSchema } as const;

export const capabilityArgumentSchemas = {
  "tabu.add": {
    type: "array",
    minItems: 3,
    maxItems: 4,
    items: [
      listName,
      configOrChanges,
      { type: "integer", minimum: 1, maximum: 100000 },
      {
        type: "object",
        additionalProperties: false,
        properties: { capacity: { type: "integer", minimum: 1, maximum: 1000 } },
      },
    ],
  },
  "tabu.contains": { type: "array", minItems: 2, maxItems: 3, items: [listName, configOrChanges, tolerance] },
  "tabu.match": { type: "array", minItems: 2, maxItems: 3, items: [listName, configOrChanges, tolerance] },
  "tabu.size": { type: "array", minItems: 1, maxItems: 1, items: [listName] },
  "tabu.clear": { type: "array", minItems: 1, maxItems: 1, items: [listName] },
  "bandit.arms": {
    type: "array",
    minItems: 2,
    maxItems: 3,
    items: [
      listName,
      { type: "array", minItems: 1, maxItems: 256, items: identifierSchema },
      banditSettingsSchema,
    ],
  },
  "bandit.select": {
    type: "array",
    minItems: 2,
    maxItems: 3,
    items: [
      listName,
      { enum: ["ucb1", "thompson", "thompson-gaussian", "epsilon-greedy"] },
      {
        type: "object",
        additionalProperties: false,
        properties: {
          epsilon: { type: "number", minimum: 0, maximum: 1 },
          decay: { type: "number", exclusiveMinimum: 0, maximum: 1 },
          minEpsilon: { type: "number", minimum: 0, maximum: 1 },
          c: { type: "number", minimum: 0, maximum: 100 },
          sigma: { type: "number", exclusiveMinimum: 0, maximum: MAX_REWARD },
        },
      },
    ],
  },
  "bandit.reward": {
    type: "array",
    minItems: 3,
    maxItems: 3,
    // Bounded so that a reward sum can never overflow to Infinity (which JSON cannot carry).
    items: [listName, identifierSchema, { type: "number", minimum: -MAX_REWARD, maximum: MAX_REWARD }],
  },
  "bandit.stats": { type: "array", minItems: 1, maxItems: 1, items: [listName] },
  "space.clamp": { type: "array", minItems: 2, maxItems: 2, items: [identifierSchema, paramValueSchema] },
  "space.toUnit": { type: "array", minItems: 2, maxItems: 2, items: [identifierSchema, paramValueSchema] },
  "space.fromUnit": {
    type: "array",
    minItems: 2,
    maxItems: 2,
    items: [identifierSchema, { type: "number" }],
  },
  "space.neighbour": {
    type: "array",
    minItems: 3,
    maxItems: 4,
    items: [
      configSchema,
      identifierSchema,
      { enum: [1, -1] },
      { type: "number", exclusiveMinimum: 0, maximum: 1 },
    ],
  },
  "space.neighbours": {
    type: "array",
    minItems: 2,
    maxItems: 3,
    items: [configSchema, { type: "number", exclusiveMinimum: 0, maximum: 1 }, paramNames],
  },
  "space.distance": {
    type: "array",
    minItems: 2,
    maxItems: 3,
    items: [configSchema, configSchema, paramNames],
  },
  "space.sample": {
    type: "array",
    minItems: 1,
    maxItems: 2,
    items: [
      { type: "integer", minimum: 1, maximum: MAX_SAMPLE },
      {
        type: "object",
        additionalProperties: false,
        properties: {
          method: { enum: ["uniform", "lhs", "sobol", "halton"] },
          params: paramNames,
          start: { type: "integer", minimum: 0, maximum: 2 ** 31 },
        },
      },
    ],
  },
  "space.latinHypercube": {
    type: "array",
    minItems: 1,
    maxItems: 2,
    items: [{ type: "integer", minimum: 1, maximum: MAX_SAMPLE }, paramNames],
  },
  "space.orthogonalArray": {
    type: "array",
    minItems: 2,
    maxItems: 2,
    items: [{ ...paramNames, minItems: 1 }, { enum: [2, 3] }],
  },
} as const;

export type CapabilityOperation = keyof typeof capabilityArgumentSchemas;
