// What a run decided, without timings or paths: the trials, proposals, hook calls and search
// configs in order. Two runs with the same records made the same decisions.
import { RunStore } from "../../runtime/store.ts";

export function trajectory(dir: string) {
  const store = RunStore.open(dir, { readOnly: true });
  try {
    return {
      trials: store.trials().map((t) => ({
        id: t.id,
        iteration: t.iteration,
        kind: t.kind,
        seed: t.seed,
        config: t.config,
        status: t.status,
        valBpb: t.valBpb,
        kept: t.kept,
        delta: t.delta,
        description: t.description,
      })),
      proposals: store.proposals().map((p) => ({
        iteration: p.iteration,
        attempt: p.attempt,
        source: p.source,
        mechanismId: p.mechanismId,
        changes: p.changes,
        status: p.status,
      })),
      ledger: store.ledger().map((l) => ({
        iteration: l.iteration,
        mechanismId: l.mechanismId,
        hook: l.hook,
        outcome: l.outcome,
        trialId: l.trialId,
      })),
      searchConfigs: store.searchConfigs().map((c) => ({ iteration: c.iteration, config: c.config })),
      mechanisms: store.mechanisms().map((m) => ({ id: m.id, status: m.status, state: m.state })),
    };
  } finally {
    store.close();
  }
}
