"""The `ocp-recovery` command line on typer (app.py assembles it): one module per group of
commands; each command's parameters are type hints beside its handler and its docstring is
its help. No logic lives here: a handler builds a request, runs a procedure, shows its
report."""
