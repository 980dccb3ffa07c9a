"""`make package`: the merged CloudFormation template lints clean and the deployment zip
stays within its budget (issue 7)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ZIP_BUDGET = 15 * 1024 * 1024


def test_chalice_package_merged_with_infra_lints_clean_and_fits_the_budget(tmp_path: Path) -> None:
    # WHEN the prod stage is packaged and merged with infra/ (offline: no AWS account)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run([str(BIN / "chalice"), "package", "--stage", "prod", "--merge-template",
                           "infra/template.json", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # THEN the zip is within 15 MB and holds the app, not the runtime's boto3/botocore
    artifact = tmp_path / "deployment.zip"
    assert artifact.stat().st_size <= ZIP_BUDGET, artifact.stat().st_size
    names = zipfile.ZipFile(artifact).namelist()
    assert "app.py" in names and any(n.startswith("chalicelib/") for n in names)
    assert not any(n.startswith(("botocore/", "boto3/")) for n in names)
    # AND the merged template passes cfn-lint
    lint = subprocess.run([str(BIN / "cfn-lint"), str(tmp_path / "sam.json")], capture_output=True,
                          text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
