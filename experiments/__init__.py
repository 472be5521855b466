"""The kgclip application: command line, configs, runner, reports."""
