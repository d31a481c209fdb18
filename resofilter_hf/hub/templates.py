"""Where the card templates live: the installed wheel's ``resofilter_hf/_model_cards``, else the source tree's
top-level ``model_cards/`` folder."""

from pathlib import Path


TAGS = ["resofilter-hf", "data-filtering"]  # the Hub tags of every card this library writes
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # resofilter_hf/


def template_path(name: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """The card template `name`: from the installed wheel (``resofilter_hf/_model_cards``), else the source tree's
    top-level ``model_cards/`` folder."""
    for folder in (package_dir / "_model_cards", package_dir.parent / "model_cards"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"card template {name!r} is in neither {package_dir / '_model_cards'} (installed) nor "
        f"{package_dir.parent / 'model_cards'} (source tree)"
    )
