"""Rollout backends: transformers generate and a colocated vLLM engine, with one output schema."""
