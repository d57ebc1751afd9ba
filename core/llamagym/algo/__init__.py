"""The learning algorithms: PPO's equations, advantage estimators, the trainer's update."""
