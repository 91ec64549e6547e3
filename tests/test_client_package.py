"""The browser client as a package: its types check the brief's samples with tsc, npm packs it,
and a built wheel carries it, so an installed exporter serves the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from browser_shop import BRIEF, CLIENT, PACKAGE
from support import IN_CI, ROOT, free_port, http_get, require_binary, wait_until

CLIENT_FILES = ("metrics-service.js", "metrics-service.d.ts")
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "target": "ES2022",
        "module": "ES2022",
        "moduleResolution": "bundler",
        "lib": ["ES2022", "DOM"],
        "types": [],
    },
    "include": ["src/*.ts"],
}


def tsc() -> str:
    """TypeScript's compiler: on the PATH, or where .ci/test installs it from the npm registry."""
    cached = ROOT / ".cache" / "typescript" / "node_modules" / ".bin" / "tsc"
    found = shutil.which("tsc") or (str(cached) if cached.exists() else None)
    if found is None:
        message = "tsc is not installed (bash .ci/test installs it into .cache/typescript)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def typecheck(tmp_path: Path, sources: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `tsc --noEmit --strict` over `sources`, with the client installed as npm would."""
    modules = tmp_path / "node_modules"
    modules.mkdir()
    (modules / PACKAGE).symlink_to(CLIENT, target_is_directory=True)
    (tmp_path / "src").mkdir()
    for name, text in sources.items():
        (tmp_path / "src" / name).write_text(text)
    (tmp_path / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    return subprocess.run(
        [tsc(), "--noEmit", "--strict", "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_brief_samples_type_check_against_the_client_types(tmp_path: Path) -> None:
    """The brief's TypeScript samples (import path changed) pass `tsc --noEmit --strict`."""
    samples = {path.name: path.read_text() for path in BRIEF.glob("*.ts")}
    assert {"quick-start.ts", "mock-data.ts", "polling.ts", "monitoring.ts"} <= set(samples)
    result = typecheck(tmp_path, samples)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_update_without_a_required_field_fails_the_type_check(tmp_path: Path) -> None:
    """The types hold the brief's minimum: an update without userName is a compile error."""
    result = typecheck(
        tmp_path,
        {
            "missing.ts": f"import {{ metricsService }} from '{PACKAGE}';\n"
            "metricsService.pushUserMetric({ userId: 'x', timestamp: '', isActive: true });\n"
        },
    )
    assert result.returncode != 0
    assert "userName" in result.stdout


def test_types_declare_every_export_of_the_module() -> None:
    """Each name the module exports is declared in metrics-service.d.ts, and nothing more."""
    node = require_binary("node")
    listed = subprocess.run(
        [
            node,
            "--input-type=module",
            "-e",
            f"const m = await import({json.dumps(str(CLIENT / 'metrics-service.js'))});"
            "console.log(JSON.stringify(Object.keys(m)));",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    exported = set(json.loads(listed.stdout)) - {"default"}
    types = (CLIENT / "metrics-service.d.ts").read_text()
    declared = {
        line.split()[3].split("(")[0].split(":")[0].split("<")[0]
        for line in types.splitlines()
        if line.startswith("export declare ")
    }
    assert exported == declared
    assert "export default metricsService;" in types


def test_npm_packs_the_client_files() -> None:
    """`npm pack` of clients/js holds the module, its types, its README and package.json."""
    npm = require_binary("npm")
    packed = subprocess.run(
        [npm, "pack", "--dry-run", "--json"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (summary,) = json.loads(packed.stdout)
    assert summary["name"] == PACKAGE
    assert {f["path"] for f in summary["files"]} == {*CLIENT_FILES, "README.md", "package.json"}
    manifest = json.loads((CLIENT / "package.json").read_text())
    assert manifest["exports"]["."] == {
        "types": "./metrics-service.d.ts",
        "default": "./metrics-service.js",
    }


@pytest.mark.integration
def test_an_installed_wheel_serves_the_client(tmp_path: Path) -> None:
    """A wheel built from the repository carries the client, and the exporter run from that
    wheel (no source tree beside it) serves the same bytes at /client/."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        for name in CLIENT_FILES:
            assert archive.read(f"exporter/web/client/{name}") == (CLIENT / name).read_bytes()
        archive.extractall(installed)

    port = free_port()
    run = (
        f"import sys; sys.path.insert(0, {str(installed)!r}); import exporter; "
        f"assert exporter.__file__.startswith({str(installed)!r}), exporter.__file__; "
        f"from exporter.cli import main; main(['--port', '{port}'])"
    )
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", run], cwd=tmp_path, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(base + "/readyz", timeout=1)[0] == 200, timeout=30)
        for name in CLIENT_FILES:
            status, body = http_get(f"{base}/client/{name}")
            assert (status, body) == (200, (CLIENT / name).read_bytes())
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
