"""What the commands around training do: evaluation, collection, SFT, plots, the scaffold."""
