"""The trainer: tokenised data, a strategy's trainable parameters, the loop and its callbacks."""
