"""`python -m isamap`: the same command as the `isamap` console script."""

from __future__ import annotations

from isamap.cli import main

if __name__ == "__main__":
    main()
