"""Off-site backups: S3-compatible object storage (`s3`), age encryption (`encryption`), and
the layout of a backup set on a store (`sets`)."""
