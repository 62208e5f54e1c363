"""`python -m proxy` — the same as the `openai-tool-proxy` command."""

import sys

from proxy.cli import main

sys.exit(main())
