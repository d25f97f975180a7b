"""UniDetox: toxic model, distilled detoxifying text, fine-tuning, baselines and analysis."""
