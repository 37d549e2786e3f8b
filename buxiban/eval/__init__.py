"""Evaluation: generate answers, score them, compare base and fine-tuned, write reports."""
