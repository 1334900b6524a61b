"""Runs: stage notebooks executed in batches into readable reports.

    stages.py       the stage notebooks, in order: the one list every other file reads
    profiles.py     the batch YAML (pure: which stages, which parameters)
    batch.py        papermill execution of a profile into one run folder; records.py: what it records
    environment.py  the kernel, the machine and package versions of a run; Ray start-up
    sweep.py        many runs of one profile on Ray; sweep_spec.py: the spec; sweep_report.py: its index
    notebook.py     what every stage notebook does before and after its own work
    reporting.py    index.html / summary.md; report_text.py: the words; plots.py: the figures
    searchbox.py    rankings to check by ear; tour.py: the pieces of notebook 00
"""
