"""What a snapshot holds as Kubernetes objects: keys, the values' encodings, encryption at rest."""
