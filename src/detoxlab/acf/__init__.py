"""NADO and attribute-controlled fine-tuning (METHODS.md section 3): objectives, trainers, workflow steps."""
