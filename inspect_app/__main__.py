"""``python -m inspect_app``: the same as the ``inspect-app`` command."""

from inspect_app.cli import main

main()
