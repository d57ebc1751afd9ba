"""llamagym plugin: Gymnasium's FrozenLake and Taxi rendered as text, and agents that answer them in words."""
