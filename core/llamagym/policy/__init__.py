"""The policy side: the model with its value head, loading, precision, generation backends."""
