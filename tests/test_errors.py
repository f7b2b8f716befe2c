"""What the teacher is told of an error that only warns (`errors.problem_text`)."""

from __future__ import annotations

import errno
from pathlib import Path

from pipeline.errors import GrilleError, disk_full_message, french_os_error, problem_text


def test_problem_text__grille_error_as_written__full_disk_named__file_error_in_french(
    tmp_path: Path,
) -> None:
    assert problem_text(GrilleError("suivi.xlsx est illisible.")) == "suivi.xlsx est illisible."
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
    assert problem_text(full, tmp_path) == disk_full_message(str(tmp_path / "x"))
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "suivi.xlsx")
    shown = problem_text(missing, tmp_path)
    assert shown == f"suivi.xlsx : {french_os_error(missing)}"
    assert "No such file" not in shown
