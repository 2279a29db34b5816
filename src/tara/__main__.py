"""Allows ``python -m tara``."""

from tara.cli import main

raise SystemExit(main())
