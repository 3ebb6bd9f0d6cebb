"""Images -> embeddings: loading, slicing planners and executors, schemes, the encoder, the cache."""
