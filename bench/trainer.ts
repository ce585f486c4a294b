// npm run bench:trainer — training throughput of the trainer at its default CPU config,
// next to a plain, straightforward reference GPT of the same size (written below in
// Python, run through the same adapter and process protocol), in one run.
// Goals: ratio >= 1.0 and >= 25k tokens/s on one core. BENCH_SECONDS sets each run's budget.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultConfig } from "../trainer/search-space.ts";
import { TorchTrainer } from "../trainer/torch-trainer.ts";
import type { TrialOutcome } from "../trainer/types.ts";

const REFERENCE = `
"""A plain GPT as one would first write it: LayerNorm, learned positions, GELU MLP, AdamW,
float32, attention by hand (torch 1.13 has no SDPA). Same size as the trainer's default."""
import argparse, json, math, time
import torch, torch.nn as nn, torch.nn.functional as F
from trainer import data

p = argparse.ArgumentParser()
p.add_argument("--config"); p.add_argument("--budget", type=float); p.add_argument("--seed", type=int)
p.add_argument("--device"); p.add_argument("--max-steps", type=int)
args, _ = p.parse_known_args()
hp = json.loads(args.config)
torch.set_num_threads(1)
torch.manual_seed(args.seed)
D, L, H, T, B = hp["DEPTH"] * hp["ASPECT_RATIO"], hp["DEPTH"], hp["DEPTH"] * hp["ASPECT_RATIO"] // hp["HEAD_DIM"], hp["SEQ_LEN"], hp["DEVICE_BATCH_SIZE"]
ACCUM = max(1, hp["TOTAL_BATCH_SIZE"] // (B * T))

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.out = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.register_buffer("mask", torch.tril(torch.ones(T, T, dtype=torch.bool)))
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = [z.view(b, t, H, d // H).transpose(1, 2) for z in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // H)
        att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(256, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, 256, bias=False)
    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))

corpus = data.load(None)
train = torch.from_numpy(corpus.train)
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def batch():
    i = torch.randint(0, len(train) - T - 1, (B, 1))
    c = train[i + torch.arange(T + 1)].long()
    return c[:, :-1], c[:, 1:]
t0 = time.time(); step = 0; elapsed = 0.0; tokens = 0; cpu = 0.0
while elapsed < args.budget:
    s, c = time.perf_counter(), time.process_time()
    for _ in range(ACCUM):
        x, y = batch()
        loss = F.cross_entropy(model(x).view(-1, 256), y.reshape(-1))
        (loss / ACCUM).backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - s
    step += 1
    if step > 1:  # like the trainer: the first step is warm-up
        elapsed += dt; tokens += ACCUM * B * T; cpu += time.process_time() - c
    if step % 10 == 0:
        print(json.dumps({"event": "progress", "step": step, "loss": loss.item(), "elapsed": elapsed,
                          "tokens_per_second": tokens / max(elapsed, 1e-9), "progress": min(1.0, elapsed / args.budget)}), flush=True)
with torch.no_grad():
    v = torch.from_numpy(corpus.val[: 64 * T + 1]).long()
    logits = model(v[:-1].view(64, T))
    nats = F.cross_entropy(logits.view(-1, 256), v[1:].view(-1), reduction="sum").item()
print(json.dumps({"event": "result", "val_bpb": nats / (math.log(2) * 64 * T), "training_seconds": elapsed,
                  "total_seconds": time.time() - t0, "warmup_seconds": 0.0, "num_steps": step, "num_tokens": tokens,
                  "num_params": sum(p.numel() for p in model.parameters()), "peak_memory_mb": 0.0, "mfu_percent": None,
                  "tokens_per_second": tokens / elapsed, "tokens_per_cpu_second": tokens / cpu, "device": "cpu", "config": hp}), flush=True)
`;

interface Row {
  name: string;
  outcome: TrialOutcome;
  /** Tokens per CPU-second of the timed steps (from the result record in the log). */
  cpuRate: number;
}

/** tokens_per_cpu_second is outside the typed result contract: read it from the log. */
function cpuRate(outcome: TrialOutcome): number {
  for (const line of readFileSync(outcome.logPath, "utf8").split("\n")) {
    if (!line.startsWith('{"event": "result"')) continue;
    const rate = (JSON.parse(line) as { tokens_per_cpu_second?: unknown }).tokens_per_cpu_second;
    return typeof rate === "number" ? rate : 0;
  }
  return 0;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 15);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "bilevel-bench-trainer-"));
  const refPath = path.join(tmp, "reference_gpt.py");
  writeFileSync(refPath, REFERENCE);
  const config = defaultConfig("cpu");
  const ours = new TorchTrainer();
  const oursFp32 = new TorchTrainer({ extraArgs: ["--cpu-dtype", "float32"] });
  const reference = new TorchTrainer({ entry: [refPath] });
  const rows: Row[] = [];
  const run = async (name: string, trainer: TorchTrainer, i: number) => {
    process.stderr.write(`running ${name} for ${seconds} s ...\n`);
    const outcome = await trainer.run({
      config: trainer === reference ? config : {},
      budgetSeconds: seconds,
      seed: 0,
      device: "cpu",
      workDir: path.join(tmp, `${name}-${i}`),
    });
    if (outcome.status !== "ok")
      process.stderr.write(`  ${name} failed: ${outcome.status}: ${outcome.message}\n`);
    rows.push({ name, outcome, cpuRate: outcome.status === "ok" ? cpuRate(outcome) : 0 });
  };
  // Interleaved, so a change in machine load hits both sides alike.
  for (let i = 0; i < 2; i++) {
    await run("trainer", ours, i);
    await run("reference", reference, i);
  }
  await run("trainer-fp32", oursFp32, 0);
  rmSync(tmp, { recursive: true, force: true });

  const mean = (name: string) => {
    const done = rows.filter((r) => r.name === name && r.outcome.result);
    const ok = done.map((r) => r.outcome.result!);
    if (!ok.length) return null;
    return {
      cps: done.reduce((s, r) => s + r.cpuRate, 0) / done.length,
      tps: ok.reduce((s, r) => s + r.tokens_per_second, 0) / ok.length,
      bpb: ok.reduce((s, r) => s + r.val_bpb, 0) / ok.length,
      steps: ok.reduce((s, r) => s + r.num_steps, 0) / ok.length,
      params: ok[0]!.num_params,
    };
  };
  const table = ["trainer", "reference", "trainer-fp32"].map((name) => ({ name, m: mean(name) }));
  console.log(
    `\ntrainer benchmark: default CPU config, ${seconds} s per run, one core (OPENBLAS_NUM_THREADS=1)`,
  );
  console.log(`config: ${JSON.stringify(config)}`);
  console.log(`load average at the end: ${os.loadavg()[0]?.toFixed(2)} on ${os.cpus().length} cores`);
  console.log("name           tokens/s   tokens/CPU-s   val_bpb   steps   params");
  for (const { name, m } of table) {
    if (!m) console.log(`${name.padEnd(14)} failed`);
    else {
      console.log(
        `${name.padEnd(14)} ${m.tps.toFixed(0).padStart(8)}   ${m.cps.toFixed(0).padStart(12)}   ${m.bpb.toFixed(3).padStart(7)}   ${m.steps.toFixed(0).padStart(5)}   ${m.params}`,
      );
    }
  }
  const a = table[0]?.m;
  const b = table[1]?.m;
  if (a && b) {
    const ratio = a.tps / b.tps;
    console.log(
      `ratio per CPU-second (less sensitive to other load on the machine): ${(a.cps / b.cps).toFixed(2)}`,
    );
    console.log(
      `ratio trainer / reference: ${ratio.toFixed(2)} (goal >= 1.0: ${ratio >= 1 ? "met" : "missed"})`,
    );
    console.log(
      `trainer tokens/s: ${a.tps.toFixed(0)} (goal >= 25000: ${a.tps >= 25000 ? "met" : "missed"})`,
    );
    console.log(
      "(reference val_bpb is measured on its own smaller eval slice; compare tokens/s, not val_bpb)",
    );
  }
}

await main();
