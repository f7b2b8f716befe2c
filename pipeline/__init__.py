"""grille: internship evaluation of BTS students with their company tutors.

The flow, one module per step: roster → workbook → mail → returns / inbox / collect →
validation → tracking → remind → report → archive. The CLI (`pipeline.cli`, one module
per stage of the season) is a thin layer over these modules.
"""

__version__ = "0.1.0"
