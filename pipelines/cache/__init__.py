"""Building teacher caches: the teacher's outputs computed once, sharded, checksummed and resumable."""
