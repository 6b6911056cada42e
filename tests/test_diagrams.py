"""The architecture diagrams in book/figures are exactly what tools/diagrams.py draws."""

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("diagrams", ROOT / "tools" / "diagrams.py")
diagrams = importlib.util.module_from_spec(spec)
sys.modules["diagrams"] = diagrams  # dataclasses look their module up
spec.loader.exec_module(diagrams)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_committed_svg_is_what_the_script_draws(name):
    path = ROOT / "book" / "figures" / name
    assert path.exists(), f"run python tools/diagrams.py ({name} is missing)"
    assert path.read_text() == diagrams.DIAGRAMS[name]().render(), (
        f"{name} is stale: run python tools/diagrams.py"
    )


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_svg_is_valid_and_accessible(name):
    root = ET.parse(ROOT / "book" / "figures" / name).getroot()
    assert root.tag == f"{SVG}svg"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text and desc is not None and len(desc.text) > 40
    assert root.get("role") == "img"


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(diagrams, "OUT", tmp_path)
    assert diagrams.main([]) == 0
    (tmp_path / "vit_pipeline.svg").write_text("<svg/>")
    assert diagrams.main(["--check"]) == 1
    assert "vit_pipeline.svg" in capsys.readouterr().err
