"""The README's commands: every one composes with the real configs, and each entry point's first one
starts as a user would type it, outside the checkout."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from speechcls.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENTRY_POINTS = ("train", "predict", "evaluate", "export", "build_cache", "detect", "evaluate_streams")
COMMAND = re.compile(rf"python -m speechcls\.({'|'.join(ENTRY_POINTS)})\b(.*)")


def readme_commands() -> list[tuple[str, list[str]]]:
    """The commands of the README's fenced bash blocks (prose mentions are not commands)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        match = COMMAND.search(line)
        if match:
            arguments = shlex.split(match.group(2).split("#")[0].split("&&")[0])
            commands.append((match.group(1), arguments))
    return commands


def as_single_run(arguments: list[str]) -> list[str]:
    """Overrides of one job: flags dropped, a sweep's comma list reduced to its first value."""
    overrides = [a for a in arguments if not a.startswith("-") and a != "job"]
    return [re.sub(r"=([^\[\],]+),\S+$", r"=\1", override) for override in overrides]


def composed(entry: str, overrides: list[str], **options):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=entry, overrides=overrides, **options)


@pytest.mark.parametrize("entry,arguments", readme_commands(), ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_readme_command_composes(entry, arguments):
    # Hydra refuses an unknown config group, option or key: a renamed config breaks the README here.
    composed(entry, as_single_run(arguments), return_hydra_config=True)


def test_the_readme_lists_every_choice_of_each_config_group_it_names():
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \|", README.read_text(), flags=re.M)
    listed = {group: set(re.findall(r"`(\w+)`", choices)) for group, choices in rows}
    assert {"data", "model", "optimizer", "scheduler", "trainer"} <= listed.keys()
    for group, choices in listed.items():
        assert choices == {path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml")}, group


def test_the_readme_has_commands_for_every_entry_point():
    assert {entry for entry, _ in readme_commands()} == set(ENTRY_POINTS)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_starts_from_outside_the_checkout(tmp_path, entry):
    """`--cfg job` of the README's first command of the entry point, run in an empty directory: the
    configs come from the installed package, and the command line gives the config the tests compose."""
    overrides = as_single_run(next(arguments for name, arguments in readme_commands() if name == entry))
    command = [sys.executable, "-m", f"speechcls.{entry}", *overrides, "--cfg", "job"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == OmegaConf.to_container(composed(entry, overrides))


def test_ci_installs_and_tests_as_the_readme_says():
    install_and_test = README.read_text().split("```bash\n")[1].splitlines()[1]
    assert install_and_test.endswith("python -m pytest")
    assert install_and_test in (ROOT / ".ci" / "run").read_text()
