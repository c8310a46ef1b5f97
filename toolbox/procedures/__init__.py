"""One module per procedure of the guide."""
