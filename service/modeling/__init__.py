"""The shared encoder, its adapted linear layers, heads and the delta format."""
