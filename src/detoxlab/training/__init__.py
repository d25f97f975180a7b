"""Training loops shared by the methods (fine-tuning on text, steering matrices, heads)."""
