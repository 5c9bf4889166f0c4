"""Method tables on the synthetic world (the demo's), their shared Trainer, reports and prediction overlays."""
