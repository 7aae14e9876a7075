"""Data: built-in tasks and dataset files, benchmarks, rewards (graders) and the two modes' prompts."""
