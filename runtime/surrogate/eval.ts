// Held-out quality of the surrogate: k-fold cross-validation with every repeat of a config in the
// same fold (otherwise a repeat in the training fold would leak the held-out value). Reports the
// rank correlation (Spearman) and RMSE of the predicted mean val_bpb against the measured values of
// held-out ok trials, next to the measured noise σ (an RMSE near σ is as good as any model of the
// mean can be), and the failure-class accuracy next to always guessing the commonest class.
import { sampleRankCorrelation } from "simple-statistics";
import { loadSearchSpace } from "../../trainer/search-space.ts";
import { spaceKey } from "../param-scale.ts";
import { createRng } from "../rng.ts";
import { recordConfig, type SurrogateData, type SurrogateRecord } from "./data.ts";
import { fitForests, measuredNoise, modelFrom } from "./model.ts";

export interface SurrogateEval {
  readonly folds: number;
  readonly records: number;
  /** Held-out ok trials the regression was scored on. */
  readonly okTrials: number;
  readonly spearman: number | null;
  readonly rmse: number | null;
  /** Standard deviation of the measured ok val_bpb (the RMSE of always predicting the mean). */
  readonly spread: number | null;
  readonly noise: { readonly sigma: number; readonly points: number; readonly trials: number };
  /** Held-out status predictions that were right; and always predicting the commonest status. */
  readonly statusAccuracy: number;
  readonly majorityAccuracy: number;
}

/** Fold of each record: configs (all their repeats) dealt to folds in a seeded shuffled order. */
function assignFolds(data: SurrogateData, folds: number, seed: number): number[] {
  const params = loadSearchSpace(data.header.device);
  const keys = data.records.map((r) => spaceKey(params, recordConfig(data.header, r)));
  const distinct = [...new Set(keys)];
  const rng = createRng("surrogate-eval", seed);
  for (let k = distinct.length - 1; k > 0; k--) {
    const j = rng.int(k + 1);
    [distinct[k], distinct[j]] = [distinct[j] as string, distinct[k] as string];
  }
  const foldOf = new Map(distinct.map((key, k) => [key, k % folds]));
  return keys.map((key) => foldOf.get(key) ?? 0);
}

function rms(values: readonly number[]): number {
  return Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
}

export function evaluateSurrogate(data: SurrogateData, folds = 5, seed = 0): SurrogateEval {
  const params = loadSearchSpace(data.header.device);
  const fold = assignFolds(data, folds, seed);
  const predicted: number[] = [];
  const measured: number[] = [];
  let right = 0;
  for (let f = 0; f < folds; f++) {
    const train = data.records.filter((_, k) => fold[k] !== f);
    const test = data.records.filter((_, k) => fold[k] === f);
    if (test.length === 0 || !train.some((r) => r.status === "ok")) continue;
    const model = modelFrom(params, fitForests(params, data, train));
    for (const r of test) {
      const config = recordConfig(data.header, r);
      const p = model.predict(config);
      if (p.status === r.status) right++;
      if (r.status === "ok" && r.valBpb !== null) {
        // The mean the regressor predicts, whatever the classifier says: RMSE is about val_bpb.
        const mean = p.valBpb ?? model.predictMean(config);
        predicted.push(mean);
        measured.push(r.valBpb);
      }
    }
  }
  return summarizeEval(data.records, folds, predicted, measured, right, measuredNoise(data));
}

function summarizeEval(
  records: readonly SurrogateRecord[],
  folds: number,
  predicted: readonly number[],
  measured: readonly number[],
  right: number,
  noise: SurrogateEval["noise"],
): SurrogateEval {
  const counts = new Map<string, number>();
  for (const r of records) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const majority = Math.max(0, ...counts.values());
  const n = measured.length;
  const meanMeasured = n ? measured.reduce((a, b) => a + b, 0) / n : 0;
  return {
    folds,
    records: records.length,
    okTrials: n,
    spearman: n > 2 ? sampleRankCorrelation([...predicted], [...measured]) : null,
    rmse: n ? rms(predicted.map((p, k) => p - (measured[k] as number))) : null,
    spread: n ? rms(measured.map((m) => m - meanMeasured)) : null,
    noise,
    statusAccuracy: records.length ? right / records.length : 0,
    majorityAccuracy: records.length ? majority / records.length : 0,
  };
}
