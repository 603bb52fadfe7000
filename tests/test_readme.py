"""Every `python -m speechcls.<entry> ...` command in the README composes with the real configs."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from speechcls.train import CONFIG_DIR

README = Path(__file__).resolve().parent.parent / "README.md"
COMMAND = re.compile(r"python -m speechcls\.(train|predict|evaluate|export|cache)\b(.*)")


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


@pytest.mark.parametrize("entry,arguments", readme_commands(), ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_readme_command_composes(entry, arguments):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=entry, overrides=as_single_run(arguments), return_hydra_config=True)
    assert cfg.paths.log_dir


def test_the_readme_has_commands_for_every_entry_point():
    assert {entry for entry, _ in readme_commands()} == {"train", "predict", "evaluate", "export", "cache"}
