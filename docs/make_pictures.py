"""Make the README's pictures from real outputs: demo → LibreOffice → PDF → PNG.

    python docs/make_pictures.py            # every picture
    python docs/make_pictures.py classeur   # only some (see PICTURES)

Needs LibreOffice (`soffice`) and poppler (`pdftoppm`). Writes docs/classeur.png (a
returned workbook, as printed), docs/bilan.png, docs/bilan_classe.png (report pages) and
docs/grille_tableur.png (the first page of a grid exported as a spreadsheet).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def to_pdf(document: Path, folder: Path) -> Path:
    profile = (folder / "profil").as_uri()
    subprocess.run(
        ["soffice", "--headless", "--norestore", f"-env:UserInstallation={profile}",
         "--convert-to", "pdf", "--outdir", str(folder), str(document)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    return folder / f"{document.stem}.pdf"


def page_png(pdf: Path, page: int, target: Path, height: float = 1.0, width: int = 1000) -> None:
    """Page `page` of `pdf` as a PNG `width` pixels wide, its top `height` fraction only."""
    stem = target.with_suffix("")
    crop = ["-W", str(width), "-H", str(int(width * 1.414 * height))]
    subprocess.run(
        ["pdftoppm", "-png", "-singlefile", "-f", str(page), "-l", str(page),
         "-scale-to-x", str(width), "-scale-to-y", "-1", *crop, str(pdf), str(stem)],
        check=True, capture_output=True,
    )  # fmt: skip
    print(f"écrit : {target.relative_to(DOCS.parent)}")


PICTURES = ("classeur", "bilan", "bilan_classe", "grille_tableur")


def main(wanted: list[str]) -> int:
    unknown = sorted(set(wanted) - set(PICTURES))
    if unknown:
        print(f"Images inconnues : {', '.join(unknown)}. Au choix : {', '.join(PICTURES)}.")
        return 2
    chosen = set(wanted or PICTURES)
    missing = [tool for tool in ("soffice", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        print(f"Outils manquants : {', '.join(missing)} (LibreOffice, poppler-utils).")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        campaign = work / "demo"
        subprocess.run(
            [sys.executable, "-m", "pipeline", "demo", str(campaign)],
            check=True, capture_output=True,
        )  # fmt: skip
        if "classeur" in chosen:
            returned = next((campaign / "retours_simules").glob("ABADIE_*.xlsx"))
            page_png(to_pdf(returned, work), 2, DOCS / "classeur.png", height=0.4)
        reports = campaign / "output" / "rapports" / "BTS_MUC_2A"
        if "bilan" in chosen:
            report = next(reports.glob("bilan_BERNARD_*.docx"))
            page_png(to_pdf(report, work), 1, DOCS / "bilan.png")
        if "bilan_classe" in chosen:
            page_png(  # the class summary and the chart of the totals
                to_pdf(reports / "bilan_classe_BTS_MUC_2A.docx", work),
                2,
                DOCS / "bilan_classe.png",
                height=0.62,
            )
        if "grille_tableur" in chosen:
            sheet = work / "grille_tableur.xlsx"
            subprocess.run(
                [sys.executable, "-m", "pipeline", "grid", "export", str(sheet)],
                check=True, capture_output=True,
            )  # fmt: skip
            subprocess.run(
                ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile",
                 str(to_pdf(sheet, work)), str(DOCS / "grille_tableur")],
                check=True, capture_output=True,
            )  # fmt: skip
            print("écrit : docs/grille_tableur.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
