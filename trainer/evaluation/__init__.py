"""Evaluation of checkpoints in both modes: sampling, accuracy/pass@k, diversity metrics, the LLM judge."""
