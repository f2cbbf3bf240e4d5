"""`python -m backend.cli` runs the `maskloop` command."""
from backend.cli import main

main()
