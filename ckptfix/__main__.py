"""`python -m ckptfix` runs the same CLI as the `ckptfix` console script."""

from ckptfix.cli import main

if __name__ == "__main__":
    main()
