"""grille: internship evaluation of BTS students with their company tutors.

The flow, one module per step: roster → workbook → mail → returns → validation →
report → archive. The CLI (`pipeline.cli`) is a thin layer over these modules.
"""

__version__ = "0.1.0"
