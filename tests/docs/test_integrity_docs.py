"""docs/integrity.md says what the integrity guard does: its YAML loads, its key table is the
config model's, its finding kinds are the scanner's, its commands parse, and the pages that point
to it (README, gateway, CLI, operations, the code table) do."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pydantic import BaseModel

from mcplane.cli.parser import build_parser
from mcplane.gateway.config import IntegrityConfig, load_gateway_config
from mcplane.gateway.injection import KINDS

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "integrity.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return GUIDE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_yaml_example_loads(tmp_path: Path) -> None:
    (text,) = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    file = tmp_path / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    integrity = load_gateway_config(file).integrity
    assert integrity.mode == "lock"
    assert integrity.scan.on_finding == "block"
    assert integrity.admin.scopes == ["mcplane.integrity"]


def _leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= _leaves(annotation, f"{prefix}{name}.")
        else:
            found.add(prefix + name)
    return found


def test_the_key_table_is_the_model() -> None:
    table = _section("Configuration")
    documented = set(re.findall(r"^\| `([\w.]+)` \|", table, flags=re.M))
    assert documented == _leaves(IntegrityConfig)


def test_the_finding_kinds_are_the_scanner_kinds() -> None:
    table = _section("The injection scan")
    assert tuple(re.findall(r"^\| `(\w+)` \|", table, flags=re.M)) == KINDS


def test_the_commands_parse() -> None:
    (block,) = re.findall(r"```bash\n(.*?)```", GUIDE, flags=re.S)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    for line in lines:
        words = shlex.split(line)
        if "=" in words[0]:
            words = words[1:]
        assert words[0] == ".venv/bin/mcplane"
        build_parser().parse_args(words[1:])


def test_the_gateway_metrics_are_in_the_operations_table_and_here() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    source = (ROOT / "src" / "mcplane" / "observability" / "metrics.py").read_text(encoding="utf-8")
    for name in re.findall(r"\"(mcplane_gateway_[a-z_]+)\"", source):
        assert f"| `{name}` |" in operations, name
        assert name in GUIDE or name.removesuffix("_total") in GUIDE, name


def test_the_other_pages_link_here() -> None:
    for page in ("README.md", "docs/gateway.md", "docs/cli.md", "docs/configuration.md"):
        assert "integrity.md" in (ROOT / page).read_text(encoding="utf-8"), page
