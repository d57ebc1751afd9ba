"""The agent side: prompting hooks, conversations, episodes, constrained answers."""
