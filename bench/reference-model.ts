// The benchmark's reference GPT, the model alone: bench/trainer.ts's training script and the step
// profile (bench/trainer_profile.py) both build it from this Python source, which reads `hp`, the
// run config.
export const REFERENCE_MODEL = `
"""A plain GPT as one would first write it: LayerNorm, learned positions, GELU MLP, float32,
attention by hand (torch 1.13 has no SDPA). Same size as the trainer's default."""
import math
import torch, torch.nn as nn, torch.nn.functional as F
VOCAB = 256
D, L, H, T = hp["DEPTH"] * hp["ASPECT_RATIO"], hp["DEPTH"], hp["DEPTH"] * hp["ASPECT_RATIO"] // hp["HEAD_DIM"], hp["SEQ_LEN"]

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
        self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, VOCAB, bias=False)
    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))
    logits = forward  # what trainer.train.evaluate calls
`;
