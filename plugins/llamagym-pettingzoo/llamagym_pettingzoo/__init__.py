"""llamagym plugin for PettingZoo's classic games: agents that read the board as text, the envs, and scripted
opponents (random legal moves are built into llamagym)."""
