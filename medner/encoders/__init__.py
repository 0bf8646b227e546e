"""Encoders: offline import of the default encoder, vocabulary pruning, continued masked-LM pretraining."""
