"""Every loop that updates weights: fine-tuning (one phase), the supervision modes that chain phases,
masked-LM pretraining of an encoder, and their resumable checkpoints."""
