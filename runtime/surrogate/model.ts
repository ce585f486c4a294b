// The surrogate model: two random forests (ml-random-forest) fitted to a recording, one
// classifying the trial's status (ok or the failure class), one regressing val_bpb on the ok
// trials, plus the run-to-run noise σ measured from the repeated points. Random forests because
// they need no feature scaling, cope with a few hundred points in ~20 dimensions, handle the
// failure cliffs (memory, time) as splits, and predict within the observed range (never a
// wild extrapolation); the mljs package is maintained, pure JS, and serialises to JSON, which
// the fitted-model cache below uses.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { RandomForestClassifier, RandomForestRegression } from "ml-random-forest";
import { sampleStandardDeviation, sum } from "simple-statistics";
import type { Config, ParamSpec, TrialStatus } from "../../mechanism-api/index.d.ts";
import { loadSearchSpace } from "../../trainer/search-space.ts";
import { spaceKey } from "../param-scale.ts";
import { recordConfig, type SurrogateData, type SurrogateRecord } from "./data.ts";
import { features } from "./features.ts";

/** Bumped when fitting changes, so cached models of an older fit are not reused. */
export const MODEL_VERSION = 1;
const STATUSES: readonly TrialStatus[] = ["ok", "oom", "timeout", "diverged", "crashed", "invalid-config"];

const FOREST = {
  nEstimators: 40,
  maxFeatures: 0.6,
  replacement: false,
  useSampleBagging: true,
  noOOB: true,
  seed: 12345,
  treeOptions: { maxDepth: 12, minNumSamples: 3 },
} as const;

export interface Prediction {
  readonly status: TrialStatus;
  /** The predicted mean val_bpb (no noise); null unless status is ok. */
  readonly valBpb: number | null;
}

export interface SurrogateModel {
  readonly params: readonly ParamSpec[];
  /** Run-to-run σ measured from the repeated points (0 when the recording has none). */
  readonly sigma: number;
  predict(config: Config): Prediction;
  /** The regressor's val_bpb whatever the predicted status (for evaluation). */
  predictMean(config: Config): number;
}

/** Pooled within-point standard deviation of the ok values of configs measured more than once. */
export function measuredNoise(data: SurrogateData): { sigma: number; points: number; trials: number } {
  const byConfig = new Map<string, number[]>();
  const params = loadSearchSpace(data.header.device);
  for (const r of data.records) {
    if (r.status !== "ok" || r.valBpb === null) continue;
    const key = spaceKey(params, recordConfig(data.header, r));
    byConfig.set(key, [...(byConfig.get(key) ?? []), r.valBpb]);
  }
  const groups = [...byConfig.values()].filter((v) => v.length > 1);
  const dof = sum(groups.map((v) => v.length - 1));
  if (dof === 0) return { sigma: 0, points: 0, trials: 0 };
  const ss = sum(groups.map((v) => (v.length - 1) * sampleStandardDeviation(v) ** 2));
  return { sigma: Math.sqrt(ss / dof), points: groups.length, trials: sum(groups.map((v) => v.length)) };
}

interface FittedJson {
  readonly version: number;
  readonly sigma: number;
  readonly regressor: ReturnType<RandomForestRegression["toJSON"]>;
  /** null: every record had the same status (`only`). */
  readonly classifier: ReturnType<RandomForestClassifier["toJSON"]> | null;
  readonly only: number;
}

/** Fit both forests to `records` (all of them, or a training fold). */
export function fitForests(
  params: readonly ParamSpec[],
  data: SurrogateData,
  records: readonly SurrogateRecord[],
): FittedJson {
  const X = records.map((r) => features(params, recordConfig(data.header, r)));
  const labels = records.map((r) => STATUSES.indexOf(r.status));
  const ok = records.flatMap((r, k) => (r.status === "ok" && r.valBpb !== null ? [k] : []));
  const regressor = new RandomForestRegression({ ...FOREST });
  regressor.train(
    ok.map((k) => X[k] as number[]),
    ok.map((k) => records[k]?.valBpb as number),
  );
  const distinct = new Set(labels);
  let classifier: FittedJson["classifier"] = null;
  if (distinct.size > 1) {
    const forest = new RandomForestClassifier({ ...FOREST });
    forest.train(X, labels);
    classifier = forest.toJSON();
  }
  return {
    version: MODEL_VERSION,
    sigma: measuredNoise(data).sigma,
    regressor: regressor.toJSON(),
    classifier,
    only: labels[0] ?? 0,
  };
}

/** A model from fitted forests. */
export function modelFrom(params: readonly ParamSpec[], fitted: FittedJson): SurrogateModel {
  const regressor = RandomForestRegression.load(fitted.regressor);
  const classifier = fitted.classifier ? RandomForestClassifier.load(fitted.classifier) : null;
  return {
    params,
    sigma: fitted.sigma,
    predict(config: Config): Prediction {
      const x = features(params, config);
      const label = classifier ? (classifier.predict([x])[0] ?? 0) : fitted.only;
      const status = STATUSES[label] ?? "crashed";
      if (status !== "ok") return { status, valBpb: null };
      return { status, valBpb: regressor.predict([x])[0] ?? null };
    },
    predictMean(config: Config): number {
      return regressor.predict([features(params, config)])[0] ?? Number.NaN;
    },
  };
}

/** Where fitted models are cached: $BILEVEL_CACHE/surrogate (default <repo>/.bilevel/cache). */
export function modelCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const base = env.BILEVEL_CACHE ?? path.resolve(import.meta.dirname, "../../.bilevel/cache");
  return path.join(base, "surrogate");
}

/**
 * The model of a recording, fitted once and cached under a hash of the file's text and the
 * fitting version (fitting takes seconds; loading the cache milliseconds). Concurrent processes
 * write through a temporary file and a rename, so a reader never sees half a model.
 */
export function loadModel(data: SurrogateData, text: string, cacheDir = modelCacheDir()): SurrogateModel {
  const params = loadSearchSpace(data.header.device);
  const key = createHash("sha256")
    .update(`${MODEL_VERSION}\n${JSON.stringify(FOREST)}\n${text}`)
    .digest("hex");
  const file = path.join(cacheDir, `${key.slice(0, 32)}.json`);
  try {
    const cached = JSON.parse(readFileSync(file, "utf8")) as FittedJson;
    if (cached.version === MODEL_VERSION) return modelFrom(params, cached);
  } catch {
    // Not cached yet (or unreadable): fit below.
  }
  const fitted = fitForests(params, data, data.records);
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(fitted));
    renameSync(tmp, file);
  } catch {
    // A cache that cannot be written only costs the next process a refit.
  }
  return modelFrom(params, fitted);
}
