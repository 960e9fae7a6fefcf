"""The serving engine: one frozen base, an adapter cache, per-row adapter routing."""
