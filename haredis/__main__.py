"""`python -m haredis …` is the `haredis` command."""

from haredis.cli import main

main()
