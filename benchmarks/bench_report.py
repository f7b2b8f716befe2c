"""Benchmark of the Word reports: `python benchmarks/bench_report.py`.

Synthetic students on the real grid (fixed seed). Prints the per-student report time
(mean over 100, save to bytes included), the class report time (best of 3, save to
bytes included) for 35, 300 and 1,000 students, the per-student cost ratio 1,000 / 300
(linear ≈ 1.0) and the peak RSS.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.grid import Grid, load_grid
from pipeline.report import (
    StudentReportData,
    build_class_report,
    build_student_report,
    document_bytes,
)
from pipeline.roster import Student
from pipeline.settings import CampaignConfig, SmtpSettings
from pipeline.validation import Evaluation

WORDS = ("stagiaire", "motivé", "« sérieux »", "curieux", "&", "rigoureux", "<client>", "équipe")
CONFIG = CampaignConfig(
    campaign_id="bench",
    school="Lycée Jean Moulin",
    session="2027",
    school_year="2026-2027",
    teacher_name="Claire Martin",
    teacher_email="claire.martin@example.fr",
    deadline=None,
    smtp=SmtpSettings(),
)


def synthetic_students(grid: Grid, count: int, seed: int = 42) -> list[StudentReportData]:
    """`count` students with random ratings, levels and appreciations."""
    rng = random.Random(seed)
    result = []
    for i in range(count):
        start = date(2027, 1, 4) + timedelta(days=rng.randrange(30))
        student = Student(
            student_id=f"E{i:05d}",
            last_name=f"Nom{i:05d}",
            first_name=rng.choice(["Léa", "Hugo", "Inès", "Noé", "Zoé"]),
            class_name="BTS MUC 2A",
            company=f"Agence {rng.choice(WORDS).capitalize()} {i}",
            tutor_name=f"Tuteur {i}",
            tutor_email=f"tuteur{i}@example.fr",
            start=start,
            end=start + timedelta(weeks=6),
        )
        status = rng.choices(["complete", "incomplete", "invalid"], [8, 1, 1])[0]
        ratings: dict[str, str | None] = {c.id: rng.choice(grid.scale_codes) for c in grid.criteria}
        levels: dict[str, int | None] = {
            d.id: rng.choice(d.values) for d in grid.global_evaluation.dimensions
        }
        problems: tuple[str, ...] = ()
        if status != "complete":
            missing = rng.choice(grid.criteria)
            ratings[missing.id] = None
            problems = (f"{missing.label} : non renseigné.",)
        text = "\n".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            for _ in range(rng.randint(1, 4))
        )
        evaluation = Evaluation(ratings, levels, text, start + timedelta(weeks=7), "Tuteur")
        team = "" if rng.random() < 0.5 else "Bon stage, à poursuivre."
        result.append(StudentReportData(student, evaluation, status, problems, team, None))
    return result


def main() -> None:
    grid = load_grid()
    students = synthetic_students(grid, 1000)
    build_student_report(grid, CONFIG, students[0])  # warm-up: builds the default template
    started = time.perf_counter()
    for data in students[:100]:
        document_bytes(build_student_report(grid, CONFIG, data))
    per_report = (time.perf_counter() - started) / 100 * 1000
    print(f"Rapport élève : {per_report:.1f} ms (moyenne sur 100, enregistrement compris)")
    per_student = {}
    for count in (35, 300, 1000):
        timings = []
        for _ in range(3):  # best of 3: steadier ratio
            started = time.perf_counter()
            report = build_class_report(grid, CONFIG, "BTS MUC 2A", students[:count])
            size = len(document_bytes(report))
            timings.append(time.perf_counter() - started)
        elapsed = min(timings)
        per_student[count] = elapsed / count * 1000
        print(
            f"Rapport de classe, {count} élèves : {elapsed:.2f} s, "
            f"{per_student[count]:.2f} ms par élève, {size / 1000:.0f} Ko"
        )
    ratio = per_student[1000] / per_student[300]
    print(f"Rapport coût par élève 1000 / 300 : {ratio:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    print(f"Mémoire maximale (RSS) : {peak * scale / 1e6:.0f} Mo")


if __name__ == "__main__":
    main()
