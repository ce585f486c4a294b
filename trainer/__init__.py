"""bilevel trainer: GPT pretraining trials scored by val_bpb."""
