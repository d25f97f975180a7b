"""DVC as a second front end to the Snakemake DAG: dvc.yaml generated from it, and mtimes restored after DVC
checkouts so that Snakemake trusts what DVC restored."""
