"""The RL math (pure tensor functions), the algorithm registry, rows, scoring and the PPO update."""
