"""The repository stands alone: nothing outside it is read; what it copies carries its licence."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support import ROOT, require_binary

# Spelled in parts, so this file does not name what it looks for.
OUTSIDE_FOLDER = "shared"
NEEDLES = ("../" + OUTSIDE_FOLDER, "parent / " + '"' + OUTSIDE_FOLDER + '"')
SCHEMAS = ROOT / "tests" / "schemas" / "grafana"


def tracked_files() -> list[Path]:
    """Every file git tracks in this checkout."""
    git = require_binary("git")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_refers_to_a_folder_beside_the_repository() -> None:
    """No tracked file names the folder beside the repository that only its own CI has."""
    offenders = []
    files = tracked_files()
    assert len(files) > 50  # the listing worked
    for path in files:
        if not path.is_file():
            continue
        text = path.read_bytes().decode(errors="replace")
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in NEEDLES if n in text]
    assert offenders == []


def test_grafana_schemas_come_with_their_licence_and_origin() -> None:
    """The dashboard schemas are in the repository with the Apache-2.0 licence and a NOTICE."""
    assert (SCHEMAS / "dashboard.jsonschema.json").is_file()
    assert "Apache License" in (SCHEMAS / "LICENSE").read_text()
    assert "Version 2.0" in (SCHEMAS / "LICENSE").read_text()
    assert "grafana/grafana-foundation-sdk" in (SCHEMAS / "NOTICE").read_text()
    tracked = {p.relative_to(ROOT) for p in tracked_files()}
    for name in ("LICENSE", "NOTICE", "dashboard.jsonschema.json"):
        assert (SCHEMAS / name).relative_to(ROOT) in tracked


def test_readme_lists_every_debian_package_the_test_command_installs() -> None:
    """Each package .ci/test may apt-get install is named in the README."""
    script = (ROOT / ".ci" / "test").read_text()
    packages = set(re.findall(r"need_apt\+=\(([\w.+-]+)\)", script))
    assert {"prometheus", "prometheus-alertmanager", "chromium"} <= packages
    readme = (ROOT / "README.md").read_text()
    missing = sorted(p for p in packages if f"`{p}`" not in readme)
    assert missing == []
