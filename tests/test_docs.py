"""The README and docs/ say what the code does: every `keras-swin` command in them parses
with the real parser, and every link to a file of the repository points at one."""

import os
import re
import shlex

import pytest

from harness import REPO_ROOT
from keras_swin.cli import build_parser

PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(REPO_ROOT, "docs")) if name.endswith(".md")
)


def _commands(text):
    """The `keras-swin ...` command lines of the bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("keras-swin ") and "..." not in line and "<" not in line:
                commands.append(line)
    return commands


def test_the_readme_starts_with_the_two_commands():
    text = open(os.path.join(REPO_ROOT, "README.md")).read()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    assert len(text.splitlines()) <= 240


@pytest.mark.parametrize("page", PAGES)
def test_every_command_parses(page):
    parser = build_parser()
    for command in _commands(open(os.path.join(REPO_ROOT, page)).read()):
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"{page}: `{command}` does not parse")


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_exists(page):
    text = open(os.path.join(REPO_ROOT, page)).read()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        path = os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(page), target))
        assert os.path.exists(path), f"{page} links to {target}, which does not exist"
