"""Prints README.md's set-up commands, one a line: the fenced block under "## Set-up".

.ci/run runs exactly these, so the README's instructions are what CI proves on a clean machine.
"""

import re
import sys
from pathlib import Path

readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
section = re.search(r"^## Set-up\n(.*?)^## ", readme, re.S | re.M)
block = section and re.search(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
if not block:
    sys.exit("README.md has no ```bash block under '## Set-up'")
commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
if len(commands) != 2:
    sys.exit(f"README.md's set-up should be two commands (install, test); found {commands}")
print("\n".join(commands))
