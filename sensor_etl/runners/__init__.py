"""The imperative shells that decide: one file through the pipeline, the daemon loop, its workers."""
