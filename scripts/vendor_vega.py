"""Rebuild vendor/dvc-plots/template.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

``dvc plots show`` / ``dvc plots diff`` write an HTML page whose scripts come from a CDN; with
``plots.html_template`` in ``.dvc/config`` pointing at this template they render offline. The three
libraries are fetched with ``npm pack`` at the pinned versions below, checked against their registry
integrity hashes, and inlined with their licence texts. Run only to change versions:

    python scripts/vendor_vega.py      # needs npm and the npm registry; writes the committed template
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "vendor" / "dvc-plots" / "template.html"
# name, version, script inside the package, npm integrity (sha512 of the tarball)
PACKAGES = [
    (
        "vega",
        "5.33.1",
        "build/vega.min.js",
        "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
    ),
    (
        "vega-lite",
        "5.23.0",
        "build/vega-lite.min.js",
        "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
    ),
    (
        "vega-embed",
        "6.29.0",
        "build/vega-embed.min.js",
        "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
    ),
]
# vega's package carries no LICENSE file; all three are BSD-3-Clause by the same authors (package.json).
BSD3 = """Copyright (c) 2015, University of Washington Interactive Data Lab.
All rights reserved.
Licensed under the BSD 3-Clause License (https://opensource.org/licenses/BSD-3-Clause)."""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
    <!-- shapprune: DVC's plots page with {names} inlined (vendor/dvc-plots, rebuilt by
         scripts/vendor_vega.py), so `dvc plots show` needs no CDN. DVC's own scripts placeholder
         (links to the CDN) is left out on purpose. -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fetch(name: str, version: str, member: str, integrity: str, tmp: Path) -> tuple[str, str]:
    """``npm pack`` one package; return its script and licence text after checking the tarball's hash."""
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(tmp)],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = tmp / json.loads(out.stdout)[0]["filename"]
    algo, want = integrity.split("-", 1)
    got = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
    if got != want:
        raise SystemExit(f"{tarball.name}: integrity {algo}-{got} != pinned {integrity}")
    with tarfile.open(tarball) as tar:
        script = tar.extractfile(f"package/{member}").read().decode()
        try:
            licence = tar.extractfile("package/LICENSE").read().decode().strip()
        except KeyError:
            licence = BSD3
    script = "\n".join(line for line in script.splitlines() if not line.startswith("//# sourceMappingURL="))
    for bad in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if bad in script:
            raise SystemExit(f"{name}: {bad!r} in the script would break the template")
    return script, licence


def main() -> None:
    blocks = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, member, integrity in PACKAGES:
            script, licence = fetch(name, version, member, integrity, Path(tmp))
            header = f"{name}@{version} ({member}, npm {integrity})\n{licence}".replace("*/", "* /")
            blocks.append(f"    <script>/*! {header} */\n{script}\n    </script>")
    names = ", ".join(f"{n}@{v}" for n, v, _, _ in PACKAGES)
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(PAGE.format(names=names, scripts="\n".join(blocks)), encoding="utf-8")
    print(f"wrote {TEMPLATE.relative_to(ROOT)} ({TEMPLATE.stat().st_size / 1024:.0f} KiB): {names}", file=sys.stderr)


if __name__ == "__main__":
    main()
