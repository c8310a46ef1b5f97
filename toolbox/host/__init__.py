"""The machine we operate on: its paths, its files, its commands."""
