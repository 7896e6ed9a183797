"""environments.yaml: the lab's entry is merged in; the user's other environments and comments stay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ensemble_orchestra.lab.envfile import EnvironmentsFileError, merge_environment

USER_FILE = """\
# my environments
default: ec2
environments:
  ec2:
    type: ec2   # the cloud one
    control-bucket: my-bucket
  lab:
    type: orchestra
    orchestra-server: old
"""


def test_merge_keeps_other_environments_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(USER_FILE)
    merge_environment(path, "lab", {"type": "orchestra", "orchestra-server": "127.0.0.1:1"})
    text = path.read_text()
    assert "# my environments" in text and "# the cloud one" in text
    data = yaml.safe_load(text)
    assert data["default"] == "ec2"
    assert data["environments"]["ec2"] == {"type": "ec2", "control-bucket": "my-bucket"}
    assert data["environments"]["lab"] == {"type": "orchestra", "orchestra-server": "127.0.0.1:1"}
    assert path.stat().st_mode & 0o077 == 0


def test_new_file_makes_the_lab_the_default(tmp_path: Path) -> None:
    path = tmp_path / "home" / "environments.yaml"
    merge_environment(path, "lab", {"type": "orchestra"})
    assert yaml.safe_load(path.read_text()) == {"default": "lab", "environments": {"lab": {"type": "orchestra"}}}


@pytest.mark.parametrize("content", ["environments: [1, 2\n", "- a list\n", "environments: 3\n"])
def test_malformed_file_is_named_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(content)
    with pytest.raises(EnvironmentsFileError) as failure:
        merge_environment(path, "lab", {"type": "orchestra"})
    assert str(path) in str(failure.value)
    assert path.read_text() == content
