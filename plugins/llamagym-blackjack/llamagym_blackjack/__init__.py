"""llamagym plugin for Gymnasium's Blackjack-v1: the `blackjack` agent, the env, and reference strategies."""
