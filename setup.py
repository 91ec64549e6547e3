"""Build step: put the browser client (clients/js) into the package, so an installed exporter
serves /client/metrics-service.js from its own files. Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CLIENT_SOURCE = Path(__file__).resolve().parent / "clients" / "js"
CLIENT_FILES = ("metrics-service.js", "metrics-service.d.ts")


class BuildWithClient(build_py):
    """build_py, plus a copy of the client's files in exporter/web/client/."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "exporter" / "web" / "client"
        target.mkdir(parents=True, exist_ok=True)
        for name in CLIENT_FILES:
            shutil.copyfile(CLIENT_SOURCE / name, target / name)


setup(cmdclass={"build_py": BuildWithClient})
