"""Data, configs, caches, the ``ovdistill`` command, the demo and reports."""
